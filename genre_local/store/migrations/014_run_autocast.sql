-- Whether a run's training forward ran under bfloat16 autocast ("bfloat16") or not ("float32"),
-- as the trainer resolved [train] bf16 on the machine (recsys/cpu.py use_bf16): `auto` is on
-- on CUDA and, for PLMNR, on CPUs with native bf16, so the stored config's "auto" does not say
-- which one trained a run. NULL: unknown (runs stored before this migration, imported runs).
ALTER TABLE runs ADD COLUMN autocast VARCHAR;
