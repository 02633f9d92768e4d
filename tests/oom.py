"""Out-of-memory errors made on purpose, for the tests of generation's halving (test_faults_midrun, test_mod)."""

from contextlib import contextmanager

import torch


@contextmanager
def memory_for_rows(max_rows: int, error):
    """Every embedding layer raises `error(rows)` for batches of more than `max_rows` rows (a global torch hook, so
    it reaches models loaded anywhere, e.g. inside the CLI); yields the batch sizes that went through."""
    passed: list[int] = []

    def hook(module, args):
        if isinstance(module, torch.nn.Embedding) and args and args[0].dim() == 2:
            if args[0].shape[0] > max_rows:
                raise error(args[0].shape[0])
            passed.append(int(args[0].shape[0]))

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        yield passed
    finally:
        handle.remove()


def cuda_oom(rows: int) -> Exception:
    return torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {rows * 64} MiB (test: {rows} rows)")


def cpu_oom(rows: int) -> Exception:
    return RuntimeError(f"[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried "
                        f"to allocate {rows * 2**26} bytes")
