-- The dtype the engine resolved and computed in, per generation run (issue 9, "which LLM wrote
-- what"): dtype "auto" is bfloat16 on a CPU that multiplies bfloat16 natively and float32 on one
-- that does not, so the same command writes slightly different outputs on different machines.
-- Not part of the generation fingerprint (that would regenerate stored outputs). NULL: unknown
-- (runs stored before this migration, imported runs, runs that started no engine).
ALTER TABLE generation_runs ADD COLUMN dtype VARCHAR;
