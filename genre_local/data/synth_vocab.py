"""Word lists of the synthetic MIND generator: places, teams, people, and per-category vocabularies.

Kept apart from the generator so the sampling code stays readable. Everything here is plain
immutable data; the generator and the tests import it (tests use CITY_STATE to find the regions
mentioned in written text).

Design choices that matter downstream:
- Every city belongs to exactly one state and no city name is another state's name, so a
  profiler (or a test) can map a mention back to its state without ambiguity.
- Every team name contains a city or state of the team's state, so sports news carry their region.
- Each subcategory maps to the GENRE profile topics it informs (most relevant first); users'
  true topics drive which subcategories they click, which is what a profiler must recover.
"""

from __future__ import annotations

from dataclasses import dataclass

from genre_local.data.taxonomy import US_STATES

# Cities per state (first entries are the most newsworthy).
STATE_CITIES: dict[str, tuple[str, ...]] = {
    "Alabama": ("Birmingham", "Montgomery", "Huntsville"),
    "Alaska": ("Anchorage", "Fairbanks", "Juneau"),
    "Arizona": ("Phoenix", "Tucson", "Scottsdale"),
    "Arkansas": ("Little Rock", "Fayetteville"),
    "California": ("Los Angeles", "San Francisco", "San Diego", "Sacramento"),
    "Colorado": ("Denver", "Boulder", "Colorado Springs"),
    "Connecticut": ("Hartford", "New Haven", "Stamford"),
    "Delaware": ("Wilmington", "Dover"),
    "Florida": ("Miami", "Orlando", "Tampa", "Jacksonville"),
    "Georgia": ("Atlanta", "Savannah", "Macon"),
    "Hawaii": ("Honolulu", "Hilo"),
    "Idaho": ("Boise", "Pocatello"),
    "Illinois": ("Chicago", "Springfield", "Naperville"),
    "Indiana": ("Indianapolis", "Fort Wayne", "South Bend"),
    "Iowa": ("Des Moines", "Cedar Rapids"),
    "Kansas": ("Wichita", "Topeka"),
    "Kentucky": ("Louisville", "Lexington"),
    "Louisiana": ("New Orleans", "Baton Rouge"),
    "Maine": ("Bangor", "Bar Harbor"),
    "Maryland": ("Baltimore", "Annapolis"),
    "Massachusetts": ("Boston", "Worcester", "Cambridge"),
    "Michigan": ("Detroit", "Grand Rapids", "Ann Arbor"),
    "Minnesota": ("Minneapolis", "St. Paul", "Duluth"),
    "Mississippi": ("Jackson", "Biloxi"),
    "Missouri": ("St. Louis", "Branson"),
    "Montana": ("Billings", "Missoula", "Bozeman"),
    "Nebraska": ("Omaha", "Lincoln"),
    "Nevada": ("Las Vegas", "Reno"),
    "New Hampshire": ("Manchester", "Concord"),
    "New Jersey": ("Newark", "Atlantic City"),
    "New Mexico": ("Albuquerque", "Santa Fe"),
    "New York": ("New York City", "Buffalo", "Albany"),
    "North Carolina": ("Charlotte", "Raleigh", "Asheville"),
    "North Dakota": ("Fargo", "Bismarck"),
    "Ohio": ("Columbus", "Cleveland", "Cincinnati"),
    "Oklahoma": ("Tulsa", "Oklahoma City"),
    "Oregon": ("Portland", "Eugene"),
    "Pennsylvania": ("Philadelphia", "Pittsburgh"),
    "Rhode Island": ("Providence", "Newport"),
    "South Carolina": ("Charleston", "Myrtle Beach"),
    "South Dakota": ("Sioux Falls", "Rapid City"),
    "Tennessee": ("Nashville", "Memphis", "Knoxville"),
    "Texas": ("Houston", "Dallas", "Austin", "San Antonio"),
    "Utah": ("Salt Lake City", "Provo"),
    "Vermont": ("Burlington", "Montpelier"),
    "Virginia": ("Richmond", "Norfolk", "Roanoke"),
    "Washington": ("Seattle", "Spokane", "Tacoma"),
    "West Virginia": ("Morgantown", "Huntington"),
    "Wisconsin": ("Milwaukee", "Madison", "Green Bay"),
    "Wyoming": ("Cheyenne", "Casper"),
}

# Approximate 2019 population in millions: where users live and where news happen.
STATE_POPULATION: dict[str, float] = {
    "Alabama": 4.9, "Alaska": 0.7, "Arizona": 7.3, "Arkansas": 3.0, "California": 39.5,
    "Colorado": 5.8, "Connecticut": 3.6, "Delaware": 1.0, "Florida": 21.5, "Georgia": 10.6,
    "Hawaii": 1.4, "Idaho": 1.8, "Illinois": 12.7, "Indiana": 6.7, "Iowa": 3.2, "Kansas": 2.9,
    "Kentucky": 4.5, "Louisiana": 4.6, "Maine": 1.3, "Maryland": 6.0, "Massachusetts": 6.9,
    "Michigan": 10.0, "Minnesota": 5.6, "Mississippi": 3.0, "Missouri": 6.1, "Montana": 1.1,
    "Nebraska": 1.9, "Nevada": 3.1, "New Hampshire": 1.4, "New Jersey": 8.9, "New Mexico": 2.1,
    "New York": 19.5, "North Carolina": 10.5, "North Dakota": 0.8, "Ohio": 11.7, "Oklahoma": 4.0,
    "Oregon": 4.2, "Pennsylvania": 12.8, "Rhode Island": 1.1, "South Carolina": 5.1,
    "South Dakota": 0.9, "Tennessee": 6.8, "Texas": 29.0, "Utah": 3.2, "Vermont": 0.6,
    "Virginia": 8.5, "Washington": 7.6, "West Virginia": 1.8, "Wisconsin": 5.8, "Wyoming": 0.6,
}

# Every place name that maps to a state: the state itself and its cities.
CITY_STATE: dict[str, str] = {
    **{state: state for state in US_STATES},
    **{city: state for state, cities in STATE_CITIES.items() for city in cities},
}

# Teams by league, with the state their name points to.
TEAMS: dict[str, tuple[tuple[str, str], ...]] = {
    "football_nfl": (
        ("Dallas Cowboys", "Texas"), ("Houston Texans", "Texas"), ("Miami Dolphins", "Florida"),
        ("Jacksonville Jaguars", "Florida"), ("Atlanta Falcons", "Georgia"), ("Chicago Bears", "Illinois"),
        ("Green Bay Packers", "Wisconsin"), ("Minnesota Vikings", "Minnesota"), ("Detroit Lions", "Michigan"),
        ("Philadelphia Eagles", "Pennsylvania"), ("Pittsburgh Steelers", "Pennsylvania"),
        ("Denver Broncos", "Colorado"), ("Seattle Seahawks", "Washington"), ("Los Angeles Rams", "California"),
        ("San Francisco 49ers", "California"), ("Cleveland Browns", "Ohio"), ("Cincinnati Bengals", "Ohio"),
        ("Baltimore Ravens", "Maryland"), ("New Orleans Saints", "Louisiana"), ("Tennessee Titans", "Tennessee"),
        ("Arizona Cardinals", "Arizona"), ("Indianapolis Colts", "Indiana"), ("Las Vegas Raiders", "Nevada"),
        ("Buffalo Bills", "New York"),
    ),
    "basketball_nba": (
        ("Boston Celtics", "Massachusetts"), ("Los Angeles Lakers", "California"),
        ("Milwaukee Bucks", "Wisconsin"), ("Denver Nuggets", "Colorado"), ("Phoenix Suns", "Arizona"),
        ("Miami Heat", "Florida"), ("Memphis Grizzlies", "Tennessee"), ("Utah Jazz", "Utah"),
        ("Portland Trail Blazers", "Oregon"), ("Oklahoma City Thunder", "Oklahoma"),
        ("Sacramento Kings", "California"), ("Charlotte Hornets", "North Carolina"),
        ("Minnesota Timberwolves", "Minnesota"), ("New Orleans Pelicans", "Louisiana"),
        ("Chicago Bulls", "Illinois"), ("Houston Rockets", "Texas"), ("Dallas Mavericks", "Texas"),
        ("Detroit Pistons", "Michigan"), ("Philadelphia 76ers", "Pennsylvania"), ("Atlanta Hawks", "Georgia"),
        ("Cleveland Cavaliers", "Ohio"), ("Indiana Pacers", "Indiana"), ("Orlando Magic", "Florida"),
        ("San Antonio Spurs", "Texas"),
    ),
    "baseball_mlb": (
        ("New York Yankees", "New York"), ("Boston Red Sox", "Massachusetts"), ("St. Louis Cardinals", "Missouri"),
        ("Chicago Cubs", "Illinois"), ("Houston Astros", "Texas"), ("Atlanta Braves", "Georgia"),
        ("Seattle Mariners", "Washington"), ("Colorado Rockies", "Colorado"), ("Arizona Diamondbacks", "Arizona"),
        ("Cleveland Guardians", "Ohio"), ("Detroit Tigers", "Michigan"), ("Minnesota Twins", "Minnesota"),
        ("Milwaukee Brewers", "Wisconsin"), ("Baltimore Orioles", "Maryland"), ("Cincinnati Reds", "Ohio"),
        ("San Diego Padres", "California"), ("Pittsburgh Pirates", "Pennsylvania"), ("Miami Marlins", "Florida"),
        ("Texas Rangers", "Texas"),
    ),
    "football_ncaa": (
        ("Alabama Crimson Tide", "Alabama"), ("Georgia Bulldogs", "Georgia"), ("Ohio State Buckeyes", "Ohio"),
        ("Michigan Wolverines", "Michigan"), ("Oregon Ducks", "Oregon"), ("Texas Longhorns", "Texas"),
        ("Oklahoma Sooners", "Oklahoma"), ("Iowa Hawkeyes", "Iowa"), ("Nebraska Cornhuskers", "Nebraska"),
        ("Wisconsin Badgers", "Wisconsin"), ("Florida Gators", "Florida"), ("Tennessee Volunteers", "Tennessee"),
        ("Kentucky Wildcats", "Kentucky"), ("Kansas Jayhawks", "Kansas"), ("Arkansas Razorbacks", "Arkansas"),
        ("Mississippi State Bulldogs", "Mississippi"), ("Utah Utes", "Utah"), ("Washington Huskies", "Washington"),
        ("Montana Grizzlies", "Montana"), ("Idaho Vandals", "Idaho"), ("Wyoming Cowboys", "Wyoming"),
        ("Vermont Catamounts", "Vermont"), ("Maine Black Bears", "Maine"), ("New Hampshire Wildcats", "New Hampshire"),
        ("Rhode Island Rams", "Rhode Island"), ("Delaware Blue Hens", "Delaware"),
        ("West Virginia Mountaineers", "West Virginia"), ("Virginia Cavaliers", "Virginia"),
        ("South Carolina Gamecocks", "South Carolina"), ("North Dakota State Bison", "North Dakota"),
        ("South Dakota State Jackrabbits", "South Dakota"), ("Hawaii Rainbow Warriors", "Hawaii"),
        ("Alaska Nanooks", "Alaska"), ("New Mexico Lobos", "New Mexico"), ("Connecticut Huskies", "Connecticut"),
        ("Maryland Terrapins", "Maryland"), ("Missouri Tigers", "Missouri"), ("Colorado Buffaloes", "Colorado"),
        ("Arizona Wildcats", "Arizona"), ("Nevada Wolf Pack", "Nevada"), ("Minnesota Golden Gophers", "Minnesota"),
        ("Illinois Fighting Illini", "Illinois"), ("Indiana Hoosiers", "Indiana"), ("Louisiana Ragin' Cajuns", "Louisiana"),
    ),
    "soccer": (
        ("Seattle Sounders", "Washington"), ("Atlanta United", "Georgia"), ("Portland Timbers", "Oregon"),
        ("Columbus Crew", "Ohio"), ("Nashville SC", "Tennessee"), ("Austin FC", "Texas"),
        ("Orlando City", "Florida"), ("Minnesota United", "Minnesota"), ("Chicago Fire", "Illinois"),
        ("Philadelphia Union", "Pennsylvania"), ("Colorado Rapids", "Colorado"), ("Los Angeles FC", "California"),
        ("Houston Dynamo", "Texas"), ("FC Cincinnati", "Ohio"), ("Charlotte FC", "North Carolina"),
        ("Sacramento Republic", "California"),
    ),
}

FIRST_NAMES: tuple[str, ...] = (
    "Maria", "James", "Aisha", "Robert", "Mei", "David", "Sofia", "Michael", "Priya", "William",
    "Elena", "Marcus", "Hannah", "Carlos", "Grace", "Daniel", "Fatima", "Kevin", "Olivia", "Andre",
    "Rachel", "Luis", "Emily", "Tyrone", "Nadia", "Brian", "Chloe", "Jamal", "Laura", "Hiroshi",
    "Rebecca", "Omar", "Megan", "Diego", "Kayla", "Samuel", "Yusuf", "Claire", "Ethan", "Rosa",
)
LAST_NAMES: tuple[str, ...] = (
    "Lopez", "Carter", "Nguyen", "Patel", "Johnson", "Kim", "Garcia", "Brooks", "Chen", "Rivera",
    "Thompson", "Okafor", "Miller", "Haddad", "Reyes", "Bennett", "Sullivan", "Moreno", "Foster",
    "Tanaka", "Hughes", "Alvarez", "Coleman", "Novak", "Price", "Ramirez", "Whitaker", "Ortiz",
    "Fischer", "Douglas", "Shah", "Morgan", "Delgado", "Palmer", "Kowalski", "Grant",
)

# Fictional organizations, so no headline makes claims about real companies.
COMPANIES: dict[str, tuple[str, ...]] = {
    "default": ("Brightline Group", "Northwind Holdings", "Summit Partners", "Redwood Labs",
                "Bluepeak Systems", "Harbor & Finch", "Crestview Media", "Ironleaf Co."),
    "autos": ("Northwind Motors", "Vantage Automotive", "Ridgeway Trucks", "Voltra EV", "Coastline Cars"),
    "finance": ("Bluepeak Bank", "Granite Trust", "Meridian Capital", "Keystone Savings", "Atlas Insurance"),
    "travel": ("SkyHarbor Airlines", "Pacific Crest Air", "Lakeside Resorts", "Wayfarer Hotels", "Seabreeze Cruises"),
    "games": ("Pixelforge Studios", "Nova Interactive", "Arcadia Games", "Quantum Play"),
    "foodanddrink": ("Golden Spoon Diner", "Harvest Table", "Copper Kettle Brewing", "Fresh Fields Market"),
    "tv": ("Channel Nine Studios", "Starlight Network", "Prime Lantern TV"),
    "movies": ("Silverscreen Pictures", "Lighthouse Films", "Aurora Studios"),
    "music": ("Echo Records", "Velvet Sound", "Bluebird Music Group"),
    "middleeast": ("Gulf Horizon Holdings", "Levant Trade Co.", "Desert Rose Energy"),
}

# Short quotes for headlines in double quotes (real MIND titles contain them).
QUOTES: tuple[str, ...] = (
    "It was a miracle", "We are not giving up", "I never saw it coming", "This is just the beginning",
    "We had no choice", "It changed everything", "Nobody expected this", "I'm still in shock",
    "We did it together", "It felt like a dream", "This is personal", "Don't panic",
)

NUMBERS: tuple[str, ...] = ("3", "4", "5", "6", "7", "8", "10", "12", "15", "20", "25", "50")


@dataclass(frozen=True)
class Subcategory:
    name: str
    topics: tuple[str, ...]  # GENRE profile topics, most relevant first
    things: tuple[str, ...]  # noun phrases for the {thing} slot
    league: str | None = None  # team news: the {team} slot draws from TEAMS[league]


@dataclass(frozen=True)
class CategoryVocab:
    weight: float  # share of news, roughly MIND's category mix
    region_rate: float  # fraction of non-team news that name a US place
    subcategories: tuple[Subcategory, ...]


CATEGORY_VOCAB: dict[str, CategoryVocab] = {
    "lifestyle": CategoryVocab(
        weight=8.0, region_rate=0.45,
        subcategories=(
            Subcategory("lifestylestyle", ("fashion",), (
                "fall fashion trends", "sneaker collections", "vintage clothing", "wedding dresses",
                "winter coats", "designer handbags", "street style", "sustainable fashion")),
            Subcategory("lifestyleparenting", ("education", "health"), (
                "screen time for toddlers", "homeschooling", "school lunches", "bedtime routines",
                "teen mental health", "college savings plans", "family game nights")),
            Subcategory("lifestylehome", ("real estate",), (
                "tiny homes", "kitchen remodels", "backyard gardens", "first-time home buying",
                "rising rents", "home renovation costs", "smart home gadgets")),
            Subcategory("lifestylerelationships", ("gender and sexuality", "culture"), (
                "same-sex weddings", "dating apps", "gender roles at home", "modern marriage",
                "LGBTQ families", "women in leadership", "pronoun etiquette")),
            Subcategory("lifestylefaith", ("religion", "culture"), (
                "church attendance", "interfaith weddings", "holiday traditions", "Ramadan celebrations",
                "Hanukkah festivities", "Sunday services", "meditation retreats")),
            Subcategory("lifestyleviral", ("social media",), (
                "a viral TikTok trend", "Instagram influencers", "an online challenge",
                "a viral wedding video", "Twitter reactions", "a meme that took over the internet")),
        ),
    ),
    "health": CategoryVocab(
        weight=5.0, region_rate=0.35,
        subcategories=(
            Subcategory("medical", ("health",), (
                "flu vaccines", "heart disease", "cancer screening", "a measles outbreak", "diabetes care",
                "hospital wait times", "antibiotic resistance", "blood pressure")),
            Subcategory("fitness", ("health",), (
                "high-intensity workouts", "marathon training", "yoga for beginners", "strength training",
                "walking 10,000 steps", "home gym equipment")),
            Subcategory("nutrition", ("health", "food"), (
                "intermittent fasting", "plant-based diets", "sugar intake", "vitamin D",
                "gut health", "the keto diet", "healthy breakfasts")),
            Subcategory("mentalhealth", ("health",), (
                "anxiety", "burnout at work", "sleep problems", "therapy costs", "loneliness",
                "seasonal depression")),
        ),
    ),
    "news": CategoryVocab(
        weight=14.0, region_rate=0.7,
        subcategories=(
            Subcategory("newseducation", ("education",), (
                "teacher shortages", "school funding", "standardized testing", "student loan debt",
                "college admissions", "a new charter school", "school bus routes")),
            Subcategory("newsscienceandtechnology", ("technology", "education"), (
                "artificial intelligence", "a rocket launch", "data privacy", "5G networks",
                "a new smartphone", "quantum computing", "self-driving software")),
            Subcategory("newscivilrights", ("race and ethnicity", "gender and sexuality", "history"), (
                "voting rights", "racial justice protests", "equal pay", "hate crime laws",
                "civil rights history", "diversity in hiring", "immigrant communities")),
            Subcategory("newsdisasters", ("disasters", "weather"), (
                "a wildfire", "an earthquake", "flash flooding", "a chemical spill", "a bridge collapse",
                "a tornado outbreak", "evacuation orders")),
            Subcategory("newsworld", ("international news",), (
                "trade talks with China", "the Brexit deadline", "protests in Hong Kong", "a United Nations vote",
                "a summit in Europe", "elections in Latin America")),
            Subcategory("newshistory", ("history", "culture"), (
                "a Civil War battlefield", "a World War II veteran", "a historic landmark", "an old shipwreck",
                "the moon landing anniversary", "a museum reopening")),
        ),
    ),
    "sports": CategoryVocab(
        weight=12.0, region_rate=0.5,
        subcategories=(
            Subcategory("football_nfl", ("culture",), (
                "a quarterback injury", "the playoff race", "a trade rumor", "a new stadium deal",
                "a controversial penalty"), league="football_nfl"),
            Subcategory("basketball_nba", ("culture", "social media"), (
                "a trade request", "a buzzer-beater", "the MVP race", "a contract extension",
                "a viral dunk"), league="basketball_nba"),
            Subcategory("baseball_mlb", ("culture", "history"), (
                "the World Series", "a no-hitter", "free agency", "a Hall of Fame vote",
                "spring training"), league="baseball_mlb"),
            Subcategory("football_ncaa", ("culture", "education"), (
                "the College Football Playoff", "a recruiting class", "a rivalry game", "a coaching search",
                "bowl season"), league="football_ncaa"),
            Subcategory("soccer", ("culture", "international news"), (
                "the World Cup qualifiers", "a transfer deal", "the MLS Cup", "a penalty shootout",
                "youth academies"), league="soccer"),
            Subcategory("golf", ("culture", "travel"), (
                "a major championship", "a hole-in-one", "the Ryder Cup", "a new golf course",
                "a playoff finish")),
            Subcategory("running", ("health",), (
                "a city marathon", "ultramarathons", "a world record", "trail running", "a charity 5K")),
        ),
    ),
    "weather": CategoryVocab(
        weight=3.0, region_rate=0.95,
        subcategories=(
            Subcategory("weatherforecast", ("weather",), (
                "a cold front", "record heat", "the first snow", "freezing rain", "a sunny weekend",
                "dense fog", "holiday travel weather")),
            Subcategory("weathertopstories", ("weather", "disasters"), (
                "a tropical storm", "a hurricane warning", "a blizzard", "tornado watches", "an ice storm",
                "a polar vortex")),
            Subcategory("climate", ("weather", "disasters"), (
                "rising sea levels", "drought conditions", "a record wildfire season", "melting glaciers",
                "climate adaptation plans")),
        ),
    ),
    "entertainment": CategoryVocab(
        weight=6.0, region_rate=0.3,
        subcategories=(
            Subcategory("celebrity", ("culture", "social media"), (
                "a celebrity breakup", "a surprise engagement", "a red carpet moment", "a celebrity feud",
                "a comeback tour")),
            Subcategory("awards", ("culture", "fashion"), (
                "the Golden Globes", "award season fashion", "the Emmys red carpet", "the Grammys snub",
                "a lifetime achievement award")),
            Subcategory("books", ("culture", "education"), (
                "a bestselling memoir", "a new thriller novel", "the book club pick", "a poetry collection",
                "a banned book")),
            Subcategory("theater", ("culture",), (
                "a Broadway revival", "a community theater show", "the holiday ballet", "a new musical")),
        ),
    ),
    "autos": CategoryVocab(
        weight=4.0, region_rate=0.3,
        subcategories=(
            Subcategory("autosnews", ("transportation",), (
                "gas prices", "a major recall", "traffic deaths", "new pickup trucks", "car insurance rates")),
            Subcategory("autoselectric", ("transportation", "technology"), (
                "electric vehicles", "charging stations", "battery range", "an electric pickup",
                "EV tax credits")),
            Subcategory("autosclassics", ("transportation", "history"), (
                "classic muscle cars", "a vintage car auction", "restored hot rods", "a car museum")),
        ),
    ),
    "travel": CategoryVocab(
        weight=4.0, region_rate=0.8,
        subcategories=(
            Subcategory("traveltrip", ("travel",), (
                "weekend getaways", "road trips", "hidden beaches", "budget travel tips", "small towns",
                "holiday destinations")),
            Subcategory("travelairlines", ("travel", "transportation"), (
                "flight delays", "airport security lines", "cheap flights", "new nonstop routes",
                "airline baggage fees")),
            Subcategory("travelparks", ("travel", "history"), (
                "national parks", "historic lighthouses", "scenic byways", "state park trails",
                "ghost towns")),
            Subcategory("travelcruises", ("travel",), (
                "cruise deals", "river cruises", "a new cruise ship", "island hopping")),
        ),
    ),
    "foodanddrink": CategoryVocab(
        weight=5.0, region_rate=0.5,
        subcategories=(
            Subcategory("recipes", ("food",), (
                "Thanksgiving turkey recipes", "slow cooker chili", "easy weeknight dinners", "holiday cookies",
                "pumpkin pie", "one-pan pasta")),
            Subcategory("restaurants", ("food", "travel"), (
                "a new barbecue joint", "the best pizza", "a famous diner", "food trucks",
                "a Michelin-starred chef")),
            Subcategory("drinks", ("food", "culture"), (
                "craft beer", "local wineries", "cold brew coffee", "holiday cocktails")),
            Subcategory("foodnews", ("food", "health"), (
                "a lettuce recall", "food safety rules", "grocery prices", "lab-grown meat")),
        ),
    ),
    "tv": CategoryVocab(
        weight=5.0, region_rate=0.15,
        subcategories=(
            Subcategory("tvnews", ("culture",), (
                "a series finale", "a surprise renewal", "a cast shake-up", "the fall TV lineup")),
            Subcategory("realitytv", ("culture", "social media"), (
                "a reality show elimination", "a dating show twist", "a cooking competition", "a talent show audition")),
            Subcategory("tvdocumentaries", ("history", "culture"), (
                "a true crime documentary", "a nature series", "a documentary about the space race")),
        ),
    ),
    "finance": CategoryVocab(
        weight=7.0, region_rate=0.45,
        subcategories=(
            Subcategory("markets", ("finance", "economy"), (
                "the stock market", "interest rates", "bond yields", "the Dow Jones", "oil prices",
                "cryptocurrency prices")),
            Subcategory("personalfinance", ("finance",), (
                "credit card debt", "retirement savings", "tax refunds", "budgeting apps", "Social Security checks",
                "emergency funds")),
            Subcategory("realestate", ("real estate", "finance"), (
                "mortgage rates", "home prices", "luxury listings", "housing inventory", "a condo boom")),
            Subcategory("companies", ("economy", "technology"), (
                "quarterly earnings", "layoffs", "a merger", "a new headquarters", "holiday hiring")),
            Subcategory("jobs", ("economy", "education"), (
                "the unemployment rate", "minimum wage", "job training programs", "remote work")),
        ),
    ),
    "movies": CategoryVocab(
        weight=4.0, region_rate=0.1,
        subcategories=(
            Subcategory("movienews", ("culture",), (
                "a superhero sequel", "a new trailer", "casting news", "a director's cut")),
            Subcategory("boxoffice", ("culture", "economy"), (
                "the weekend box office", "a surprise flop", "a record opening", "streaming releases")),
            Subcategory("movieclassics", ("history", "culture"), (
                "classic westerns", "a silent film restoration", "a holiday movie marathon")),
        ),
    ),
    "video": CategoryVocab(
        weight=3.0, region_rate=0.4,
        subcategories=(
            Subcategory("viral", ("social media",), (
                "a dog that learned to skateboard", "a flash mob", "a surprise proposal", "a dancing grandpa")),
            Subcategory("weathervideos", ("weather", "disasters"), (
                "a tornado caught on camera", "storm chasers", "a flooded highway", "hail the size of golf balls")),
            Subcategory("travelvideos", ("travel",), (
                "a drone tour", "a mountain hike", "a hot air balloon ride")),
            Subcategory("howto", ("education", "technology"), (
                "fixing a leaky faucet", "setting up a home network", "coding for kids")),
        ),
    ),
    "music": CategoryVocab(
        weight=3.0, region_rate=0.35,
        subcategories=(
            Subcategory("musicnews", ("culture",), (
                "a new album", "a reunion tour", "a chart-topping single", "a surprise release")),
            Subcategory("concerts", ("culture", "travel"), (
                "a sold-out concert", "a music festival", "ticket prices", "an outdoor amphitheater")),
            Subcategory("hiphop", ("culture", "race and ethnicity"), (
                "a hip-hop anniversary", "a rap battle", "a mixtape drop")),
            Subcategory("countrymusic", ("culture",), (
                "the CMA Awards", "a country duet", "a honky-tonk revival")),
        ),
    ),
    "kids": CategoryVocab(
        weight=2.0, region_rate=0.3,
        subcategories=(
            Subcategory("learning", ("education",), (
                "reading challenges", "science fairs", "math games", "spelling bees")),
            Subcategory("kidsactivities", ("education", "culture"), (
                "craft projects", "summer camps", "museum days", "Halloween costumes")),
            Subcategory("family", ("education", "health"), (
                "family dinners", "kids' sports safety", "playground safety")),
        ),
    ),
    "middleeast": CategoryVocab(
        weight=2.0, region_rate=0.0,
        subcategories=(
            Subcategory("middleeastpolitics", ("international news",), (
                "ceasefire talks", "elections in Israel", "protests in Lebanon", "sanctions on Iran")),
            Subcategory("middleeastbusiness", ("international news", "economy"), (
                "oil output cuts", "a Dubai expo", "a Saudi investment fund", "Gulf airline expansion")),
            Subcategory("middleeastculture", ("international news", "religion", "history"), (
                "ancient ruins in Jordan", "pilgrims in Mecca", "a Cairo museum", "Jerusalem's old city")),
        ),
    ),
    "northamerica": CategoryVocab(
        weight=3.0, region_rate=0.5,
        subcategories=(
            Subcategory("canada", ("international news",), (
                "a Canadian election", "Toronto transit plans", "maple syrup exports", "Quebec politics")),
            Subcategory("mexico", ("international news", "travel"), (
                "Mexico City", "border crossings", "tourism in Cancun", "Day of the Dead celebrations")),
            Subcategory("immigration", ("race and ethnicity", "international news"), (
                "asylum seekers", "DACA recipients", "immigration courts", "family reunification")),
            Subcategory("trade", ("economy", "international news"), (
                "the USMCA trade deal", "tariffs on steel", "cross-border trucking")),
        ),
    ),
    "games": CategoryVocab(
        weight=2.0, region_rate=0.1,
        subcategories=(
            Subcategory("gamingnews", ("technology",), (
                "a new game console", "a game delay", "a patch update", "cloud gaming")),
            Subcategory("esports", ("technology", "social media"), (
                "an esports final", "a streaming record", "a pro gamer contract")),
            Subcategory("boardgames", ("culture", "education"), (
                "board game cafes", "chess tournaments", "a crossword craze")),
        ),
    ),
}


# ---------------------------------------------------------------- sentence templates
# Slots: {thing}, {place}, {person}, {company}, {team}, {num}, {quote}. {thing} mixes singular
# and plural noun phrases, so no template makes it the subject of a present-tense verb.
# Templates naming {place} serve only news with a region, the others only news without one:
# region news always carry their place and plain news never carry one.


@dataclass(frozen=True)
class Templates:
    titles: tuple[str, ...]
    abstracts: tuple[str, ...]


GENERIC = Templates(
    titles=(
        "{place} residents weigh in on {thing}",
        "How {place} is reacting to {thing}",
        "{place} sees a surge of interest in {thing}",
        "What {place} gets right about {thing}",
        "{person} of {place} talks about {thing}",
        "{num} things to know about {thing}",
        "Why experts are paying attention to {thing}",
        "The truth about {thing}, according to experts",
        "{person} explains what's next for {thing}",
        "\"{quote}\": {person} on {thing}",
        "Everything you need to know about {thing} this week",
        "{company} bets big on {thing}",
    ),
    abstracts=(
        "{person} of {place} said people keep asking about {thing}. Local experts expect more attention in the coming months.",
        "In {place}, {thing} drew crowds and questions alike. Officials promised an update soon.",
        "Experts say {thing} will keep drawing attention in the coming months. Here is what readers should know.",
        "{person} shared a closer look at {thing} and why it matters now.",
        "From early signs to the latest numbers, here is the latest on {thing}.",
    ),
)

TEAM = Templates(
    titles=(
        "{team} rally late to win a thriller",
        "{team} coach on {thing}: \"{quote}\"",
        "{person} leads {team} past rivals",
        "{team} face questions about {thing}",
        "{num} takeaways from the latest {team} game",
        "What {thing} means for {team}",
        "{team} fans react to {thing}",
        "{team} notebook: {thing} and a tough road trip",
    ),
    abstracts=(
        "{person} scored twice as {team} improved their record. The coach praised the defense after the game.",
        "{team} are dealing with {thing} ahead of a crucial stretch of the season.",
        "Fans of {team} packed the stadium as {person} returned from injury.",
        "{person} spoke about {thing} after practice, saying {team} are focused on the next game.",
    ),
)

# Category-specific templates; the generator prefers them over GENERIC.
CATEGORY_TEMPLATES: dict[str, Templates] = {
    "lifestyle": Templates(
        titles=(
            "{place} couple goes viral for their take on {thing}",
            "Inside the {place} trend everyone is talking about: {thing}",
            "{person} of {place} shares a personal story about {thing}",
            "{num} ways to rethink {thing} this season",
            "{thing}: what experts wish you knew",
            "\"{quote}\": {person} gets real about {thing}",
        ),
        abstracts=(
            "{person}, who lives in {place}, says {thing} changed how the family spends its weekends.",
            "A new survey of {place} households looked at {thing}, and the answers may surprise you.",
            "We asked readers about {thing}. Their answers ranged from funny to heartfelt.",
            "{person} offers practical advice on {thing} for busy households.",
        ),
    ),
    "health": Templates(
        titles=(
            "Doctors in {place} warn about {thing} as cases rise",
            "{place} hospital launches a program on {thing}",
            "{place} health officials issue guidance on {thing}",
            "New study links {thing} to a longer life",
            "{num} myths about {thing} you should stop believing",
            "Ask the doctor: {thing}",
        ),
        abstracts=(
            "Health officials in {place} said questions about {thing} keep coming in. Clinics are extending their hours.",
            "{person}, a physician in {place}, explains what patients should know about {thing}.",
            "A large new study on {thing} followed thousands of adults for a decade. Researchers urge regular checkups.",
            "{person}, a registered nurse, answers the most common questions about {thing}.",
        ),
    ),
    "news": Templates(
        titles=(
            "Officials in {place} respond to {thing}",
            "{place} lawmakers debate {thing}",
            "{place} community rallies after {thing}",
            "Breaking: {thing} prompts an emergency meeting in {place}",
            "What we know so far about {thing}",
            "{person} testifies on {thing}",
            "Analysis: the fight over {thing} is far from over",
        ),
        abstracts=(
            "Officials in {place} held a news conference about {thing} on Tuesday. {person} said more details would follow.",
            "Residents of {place} filled a town hall meeting to ask about {thing}.",
            "{person} said the debate over {thing} would continue next week. Advocates on both sides are preparing.",
            "Reporters pieced together a timeline of {thing} from interviews and public records.",
        ),
    ),
    "sports": Templates(
        titles=(
            "{place} hosts {thing}",
            "{person} of {place} shines at {thing}",
            "{person} wins {thing}",
            "{num} moments we'll remember from {thing}",
        ),
        abstracts=(
            "Crowds lined the course in {place} for {thing}, and {person} did not disappoint.",
            "{person} called {thing} the highlight of the season.",
        ),
    ),
    "weather": Templates(
        titles=(
            "Forecast: {thing} expected in {place} this weekend",
            "{place} braces for {thing}",
            "Forecasters track {thing} near {place}",
            "What {thing} means for your commute",
            "How to stay safe during {thing}",
        ),
        abstracts=(
            "Forecasters expect {thing} to reach {place} by Friday. Residents should check local alerts before traveling.",
            "The National Weather Service office in {place} issued an advisory ahead of {thing}.",
            "Meteorologists explain the science behind {thing} and how to prepare.",
        ),
    ),
    "entertainment": Templates(
        titles=(
            "{place} premiere draws stars for {thing}",
            "Fans in {place} line up for {thing}",
            "{person} opens up about {thing}",
            "Everyone is talking about {thing}",
            "\"{quote}\": {person} on {thing}",
        ),
        abstracts=(
            "Fans gathered in {place} as {person} arrived for {thing}.",
            "{person} spoke candidly about {thing} in a new interview.",
            "Here is everything we know about {thing} so far.",
        ),
    ),
    "autos": Templates(
        titles=(
            "{place} drivers react to {thing}",
            "{company} plant in {place} gears up for {thing}",
            "{company} unveils plans for {thing}",
            "Review: we put {thing} to the test",
            "{num} things buyers should know about {thing}",
        ),
        abstracts=(
            "Dealers in {place} report strong interest in {thing} as the year ends.",
            "{company} says {thing} will reach showrooms next spring. Analysts expect steep competition.",
            "{person} took a close look at {thing} and came away impressed.",
        ),
    ),
    "travel": Templates(
        titles=(
            "{place} is the new hot spot for {thing}",
            "{num} reasons to visit {place} this winter",
            "Travelers flock to {place}: a guide to {thing}",
            "A traveler's guide to {thing}",
            "{company} changes the game on {thing}",
            "{num} tips for {thing} this holiday season",
        ),
        abstracts=(
            "{place} has become a favorite destination, and locals share their tips on {thing}.",
            "Visitors to {place} say planning ahead for {thing} pays off.",
            "Experienced travelers share what they have learned about {thing}.",
            "{company} announced changes related to {thing} starting next month.",
        ),
    ),
    "foodanddrink": Templates(
        titles=(
            "{place} food lovers weigh in on {thing}",
            "{company} opens in {place} with a twist on {thing}",
            "A {place} chef's secret to {thing}",
            "Chefs share secrets to {thing}",
            "{num} mistakes everyone makes with {thing}",
            "Why everyone is talking about {thing}",
        ),
        abstracts=(
            "{person}, a chef in {place}, shares tips on {thing} for home cooks.",
            "Diners in {place} lined up for a taste of {thing}.",
            "Home cooks and critics alike weighed in on {thing}.",
        ),
    ),
    "tv": Templates(
        titles=(
            "{place} watch party celebrates {thing}",
            "Fans can't stop talking about {thing}",
            "{person} dishes on {thing}",
            "\"{quote}\": {person} reacts to {thing}",
        ),
        abstracts=(
            "Viewers in {place} packed a local theater to watch {thing}.",
            "{person} revealed new details about {thing} in a late-night interview.",
            "Viewers flooded social media after {thing}.",
        ),
    ),
    "finance": Templates(
        titles=(
            "{place} families feel the squeeze of {thing}",
            "{company} of {place} weighs in on {thing}",
            "What {thing} means for {place} homeowners",
            "{company} reports on {thing}",
            "Analysts: {thing} could surprise investors",
            "{num} money moves to make now, with an eye on {thing}",
        ),
        abstracts=(
            "Economists in {place} say {thing} will shape household budgets next year.",
            "{company} shared new numbers on {thing}. Analysts remain cautious about the next quarter.",
            "{person}, a financial planner, explains how {thing} could affect your wallet.",
        ),
    ),
    "movies": Templates(
        titles=(
            "{place} film festival spotlights {thing}",
            "Review: {thing} delivers",
            "Everything we know about {thing}",
            "{person} weighs in on {thing}",
        ),
        abstracts=(
            "Moviegoers in {place} lined up early for {thing}.",
            "Critics are split on {thing}, but audiences seem to agree.",
            "{person} talked about {thing} at a press event.",
        ),
    ),
    "video": Templates(
        titles=(
            "Watch: {thing} in {place}",
            "Caught on camera in {place}: {thing}",
            "Video: {thing}",
            "You have to see {thing}",
        ),
        abstracts=(
            "A viewer in {place} captured {thing} on video.",
            "This clip of {thing} has been shared thousands of times.",
        ),
    ),
    "music": Templates(
        titles=(
            "{place} fans pack the house for {thing}",
            "{person} brings {thing} to {place}",
            "{person} announces {thing}",
            "Listen: {thing}",
            "\"{quote}\": {person} on {thing}",
        ),
        abstracts=(
            "{person} talked about {thing} before a packed show in {place}.",
            "{person} says the work on {thing} took years.",
            "Critics and fans are weighing in on {thing}.",
        ),
    ),
    "kids": Templates(
        titles=(
            "{place} library hosts {thing}",
            "{place} families try {thing}",
            "{num} ideas for {thing} this weekend",
            "Teachers share tips on {thing}",
        ),
        abstracts=(
            "Parents in {place} say {thing} kept the kids busy all week.",
            "Educators explain why {thing} can help children learn.",
        ),
    ),
    "middleeast": Templates(
        titles=(
            "{company} eyes {thing}",
            "Analysis: what {thing} means for the region",
            "{person} reports on {thing}",
        ),
        abstracts=(
            "Diplomats say {thing} could reshape the region. {person} reports from the scene.",
            "Regional leaders met this week to discuss {thing}.",
        ),
    ),
    "northamerica": Templates(
        titles=(
            "{place} leaders weigh in on {thing}",
            "What {thing} means for {place}",
            "Explainer: {thing}",
            "{person} on {thing}: \"{quote}\"",
        ),
        abstracts=(
            "Officials in {place} are watching {thing} closely.",
            "{person} explains the background of {thing} and what may come next.",
        ),
    ),
    "games": Templates(
        titles=(
            "{place} gamers line up for {thing}",
            "{company} reveals {thing}",
            "Hands-on with {thing}",
            "{num} things we learned about {thing}",
        ),
        abstracts=(
            "Gamers in {place} waited hours to try {thing}.",
            "{company} shared new details about {thing} during a livestream.",
        ),
    ),
}
