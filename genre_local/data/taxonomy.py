"""The fixed label sets of GENRE: news categories, profile topics, US regions.

Shared by the synthetic generator, the LLM prompts and schemas, and the recommender's
profile vocabularies, so all stages agree on spelling and order.
"""

from __future__ import annotations

# The 18 MIND news categories GENRE's personalized news generator may assign.
CATEGORIES: tuple[str, ...] = (
    "lifestyle", "health", "news", "sports", "weather", "entertainment", "autos", "travel",
    "foodanddrink", "tv", "finance", "movies", "video", "music", "kids", "middleeast",
    "northamerica", "games",
)

# The 19 interest topics of GENRE's user profiler.
PROFILE_TOPICS: tuple[str, ...] = (
    "health", "education", "travel", "religion", "culture", "food", "fashion", "technology",
    "social media", "gender and sexuality", "race and ethnicity", "history", "economy",
    "finance", "real estate", "transportation", "weather", "disasters", "international news",
)

# Profile regions are US states (GENRE's profiler names regions such as "Florida").
US_STATES: tuple[str, ...] = (
    "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut",
    "Delaware", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa",
    "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan",
    "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada", "New Hampshire",
    "New Jersey", "New Mexico", "New York", "North Carolina", "North Dakota", "Ohio",
    "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island", "South Carolina", "South Dakota",
    "Tennessee", "Texas", "Utah", "Vermont", "Virginia", "Washington", "West Virginia",
    "Wisconsin", "Wyoming",
)
