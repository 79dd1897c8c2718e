"""Machine description written into every benchmark result (CPU, memory, GPU, library versions)."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any


def _proc(path: str, pattern: str) -> str | None:
    file = Path(path)
    if not file.exists():
        return None
    found = re.search(pattern, file.read_text())
    return found.group(1).strip() if found else None


def machine_info(packages: tuple[str, ...] = ("torch", "transformers", "vllm", "pyarrow", "pandas")) -> dict[str, Any]:
    memory_kb = _proc("/proc/meminfo", r"MemTotal:\s*(\d+) kB")
    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(),
        "cpu": _proc("/proc/cpuinfo", r"model name\s*:\s*(.+)") or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "memory_gib": round(int(memory_kb) / 2**20, 1) if memory_kb else None,
        "load_average": os.getloadavg(),
    }
    for package in packages:
        try:
            info[package] = __import__(package).__version__
        except ImportError:
            info[package] = None
    try:
        import torch
    except ImportError:
        return info
    info["torch_threads"] = torch.get_num_threads()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                       "count": torch.cuda.device_count()}
    return info
