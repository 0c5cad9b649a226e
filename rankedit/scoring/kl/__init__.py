"""KL travelled from the base (RL's Razor): the sampler (``sampler``), the estimators' arithmetic (``estimate``)
and the prompts (``prompts``)."""
