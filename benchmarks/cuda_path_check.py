"""The toolkit's CUDA layer on a real GPU, without TensorRT: ``eeg2img_deploy/gpu.py`` and the TensorRT
runtime's ``CudaStream`` through cuda-python, exactly as the runtime calls them.

    python benchmarks/cuda_path_check.py      # a CUDA machine with cuda-bindings (gpu_check.py runs it too)

What it checks, each against the numbers it moved: the device query; a round trip pinned -> device ->
device -> pinned on one stream; a CUDA graph captured (thread-local mode) from pinned copies and
replayed with new host data; a capture that an allocation invalidates (``cudaStreamEndCapture`` fails,
no graph) and that ``cudaGetLastError`` then clears, as ``TensorRTStage`` does after a failed capture.
The test suite runs it against the fake cudart (``tests/fakes``); only a GPU machine tells whether the
fake and cuda-python agree.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]  # the package from this checkout


def run(n: int = 1 << 20) -> dict[str, Any]:
    from eeg2img_deploy.gpu import DeviceBuffer, PinnedBuffer, cuda_call, cuda_device, import_cudart
    from eeg2img_deploy.runtime.trt_backend import CudaStream

    cudart = import_cudart()
    device = cuda_device(cudart)  # BackendUnavailableError without a usable GPU
    stream = CudaStream(cudart)
    nbytes = n * 4
    host_in, host_out = PinnedBuffer(cudart, nbytes, "in"), PinnedBuffer(cudart, nbytes, "out")
    dev_a, dev_b = DeviceBuffer(cudart, nbytes, "a"), DeviceBuffer(cudart, nbytes, "b")
    src, dst = host_in.view((n,), np.float32), host_out.view((n,), np.float32)
    out: dict[str, Any] = {"device": f"{device.name} (sm_{device.compute_capability.replace('.', '')})"}
    try:
        src[:] = np.arange(n, dtype=np.float32)
        dst[:] = -1
        _copies(stream, dev_a, dev_b, host_in, host_out, nbytes)
        stream.synchronize()
        out["round_trip_equal"] = bool(np.array_equal(dst, src))

        mode = cudart.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        cuda_call(cudart, cudart.cudaStreamBeginCapture(stream.stream, mode), "cudaStreamBeginCapture")
        _copies(stream, dev_a, dev_b, host_in, host_out, nbytes)
        graph = cuda_call(cudart, cudart.cudaStreamEndCapture(stream.stream), "cudaStreamEndCapture")
        graph_exec = cuda_call(cudart, cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")
        cudart.cudaGraphDestroy(graph)
        src[:] = np.arange(n, dtype=np.float32)[::-1]  # new data: the replay must read it
        dst[:] = -1
        cuda_call(cudart, cudart.cudaGraphLaunch(graph_exec, stream.stream), "cudaGraphLaunch")
        stream.synchronize()
        cudart.cudaGraphExecDestroy(graph_exec)
        out["graph_replay_equal"] = bool(np.array_equal(dst, src))

        cuda_call(cudart, cudart.cudaStreamBeginCapture(stream.stream, mode), "cudaStreamBeginCapture")
        malloc_err = cudart.cudaMalloc(16)[0]  # not permitted while capturing: invalidates the capture
        err, graph = cudart.cudaStreamEndCapture(stream.stream)
        pending = cudart.cudaPeekAtLastError()[0]
        cudart.cudaGetLastError()
        out["failed_capture"] = {
            "malloc_during_capture": repr(malloc_err),
            "end_capture": repr(err),
            "graph_is_none": graph is None,
            "pending_before_clear": repr(pending),
            "cleared": cudart.cudaPeekAtLastError()[0] == cudart.cudaError_t.cudaSuccess,
        }
        stream.synchronize()  # the stream works again after the failed capture
        out["ok"] = bool(out["round_trip_equal"] and out["graph_replay_equal"] and out["failed_capture"]["cleared"]
                         and err != cudart.cudaError_t.cudaSuccess)  # fmt: skip
    finally:
        for buf in (host_in, host_out, dev_a, dev_b):
            buf.free()
        stream.close()
    return out


def _copies(stream: Any, dev_a: Any, dev_b: Any, host_in: Any, host_out: Any, nbytes: int) -> None:
    stream.copy(dev_a.ptr, host_in.ptr, nbytes, "HostToDevice")
    stream.copy(dev_b.ptr, dev_a.ptr, nbytes, "DeviceToDevice")
    stream.copy(host_out.ptr, dev_b.ptr, nbytes, "DeviceToHost")


if __name__ == "__main__":
    result = run()
    print(json.dumps(result, indent=2))
    sys.exit(0 if result["ok"] else 1)
