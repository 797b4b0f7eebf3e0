-- Profile fidelity beside its chance level (issue 9 part 6): the expected scores of random
-- profiles of the same sizes on the same users. NULL on rows stored before this migration.
ALTER TABLE profile_fidelity ADD COLUMN chance_precision_at_3 DOUBLE;
ALTER TABLE profile_fidelity ADD COLUMN chance_recall DOUBLE;
ALTER TABLE profile_fidelity ADD COLUMN chance_region_accuracy DOUBLE;
