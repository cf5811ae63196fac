"""The synthetic track: small decoders trained from scratch on the alignment task, many runs batched.

    data           the alignment data: vectorised rule tables, the training stream by regime, held-out sets
    scratch        the batched from-scratch decoder (Ensemble: E independent models in one set of tensors)
    runs           sweep.py's run groups: train, evaluate on the way, checkpoint, resume
    report         sweep.py's results.md, phase diagrams and examples.md
    minimal_model  the minimal model (theory_sim.py, and sweep.py beside the transformers)

The real-LM modules (contexts, training, evaluation, ...) stay one level up in contrastive_context/.
"""
