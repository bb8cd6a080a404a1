"""The Dia model as a speech source, streamed frame by frame through Hugging Face transformers.

:mod:`.model` is the source (it needs torch and transformers, the ``dia`` extra); its parts:
:mod:`.steps` (the worker's codebook tokens, step by step, and stopping it), :mod:`.frames`
(the delay pattern undone and the decode windows planned, no torch), :mod:`.text_batches`
(texts cut to what one generation takes), :mod:`.tensor_audio` (PCM on the tensor).
:mod:`.random_weights` builds Dia with seeded random weights for tests and benchmarks.
Nothing is imported here, so the torch-free parts load without torch.
"""
