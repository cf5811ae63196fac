"""Contrastive-Context: the library the top-level scripts share (METHOD.md is the method, README the map).

    from contrastive_context.contexts import Sampler      # the method: choose each target's context
    from contrastive_context import tasks, evaluation     # data + prompts, the evaluation context types

One module per concern; the scripts at the repository's top level (sample_contexts.py, train.py,
evaluate.py, ...) are thin command lines over these modules and never import each other.
"""
