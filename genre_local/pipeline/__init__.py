"""The generation pipeline: inputs from the store, request planning with fingerprints,
batched engine calls with retries, transactional writes, run costs and profile fidelity."""
