"""The CUDA-optional training and inference runner shared by the CNN detectors.

Modules
-------
``device``
    :func:`~cvtool.runner.device.resolve_device` (``auto|cpu|cuda|cuda:N``),
    mixed precision, seeding and determinism.
``checkpoint``
    :func:`~cvtool.runner.checkpoint.save_checkpoint` (atomic) and
    :func:`~cvtool.runner.checkpoint.load_checkpoint` (``weights_only=True``,
    foreign or corrupt files -> :class:`~cvtool.errors.BadInputError`).
``data``
    Batches from tensors held in memory (shuffled on the device) or from a
    ``DataLoader`` with workers; both sharded like ``DistributedSampler``.
``distributed``
    ``torchrun`` environment -> ``torch.distributed`` process group (nccl on
    GPU, gloo on CPU) and DistributedDataParallel.
``loop``
    :class:`~cvtool.runner.loop.TrainConfig`, the :class:`~cvtool.runner.loop.Task`
    interface a model kind implements, and :func:`~cvtool.runner.loop.fit`
    (run folder, metrics, checkpoints, resume, SIGTERM/Ctrl-C).

Importing this package imports nothing heavy; torch is imported by the modules.
"""
