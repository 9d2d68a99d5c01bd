"""pippy_torch — mark pipeline stage boundaries in a PyTorch model for pippyc.

pippyc cuts an ONNX model into pipeline stages. It can choose the cuts itself, or you can choose them, as
with PiPPy's ``pipe_split()``: call :func:`pipe_split` inside ``forward`` where a new stage should begin,
export with :func:`export`, and pippyc splits at every ``PipeSplit`` node (op type ``PipeSplit``, domain
``pippy``, one input, one output, identity semantics).

Usage::

    import torch
    from pippy_torch import pipe_split, export       # tools/ on sys.path, or copy this file

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(64, 256)
            self.fc2 = torch.nn.Linear(256, 10)

        def forward(self, x):
            x = torch.relu(self.fc1(x))
            x = pipe_split(x)                         # stage 1 begins here
            return self.fc2(x)

    net = Net().eval()
    export(net, (torch.randn(8, 64),), "net.onnx", input_names=["x"], output_names=["y"])
    # then:  pippyc net.onnx ...   (the PipeSplit nodes set the stage boundaries)

Notes:

* In eager mode ``pipe_split(x)`` returns ``x`` itself (no copy, no autograd node), so the model trains
  and runs unchanged.
* :func:`export` uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), verified
  on torch 2.15. The dynamo-based exporter ignores ``symbolic`` methods and would not emit the node.
  If you call ``torch.onnx.export`` yourself, pass ``dynamo=False`` and ``custom_opsets={"pippy": 1}``.
* ONNX Runtime does not know ``pippy::PipeSplit``. To run an annotated model in it, replace the nodes
  with ``Identity`` first (:func:`strip_pipe_splits` does that on an ``onnx.ModelProto``).
* A model exported without PipeSplit nodes can still carry split points: set the model metadata entry
  ``pippy.split_before`` to a comma-separated list of ONNX node names where stages begin.
"""

import torch

PIPPY_DOMAIN = "pippy"
PIPPY_DOMAIN_VERSION = 1
PIPE_SPLIT_OP = "PipeSplit"

__all__ = ["pipe_split", "export", "strip_pipe_splits", "drop_unused_pippy_opset", "PIPPY_DOMAIN", "PIPE_SPLIT_OP"]


class _PipeSplit(torch.autograd.Function):
    """Identity whose ONNX symbolic is a pippy::PipeSplit node."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad

    @staticmethod
    def symbolic(g, x):
        out = g.op(PIPPY_DOMAIN + "::" + PIPE_SPLIT_OP, x)
        out.setType(x.type())  # identity: same type and shape (keeps shape inference complete)
        return out


def pipe_split(x):
    """Mark a pipeline stage boundary: everything computed from the returned value belongs to a later stage.

    Returns ``x`` unchanged in eager mode; while tracing for ONNX export (legacy exporter) it records a
    ``pippy::PipeSplit`` node with ``x`` as its only input.
    """
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return _PipeSplit.apply(x)
    return x


def export(model, args, path, input_names, output_names, dynamic_batch=True, opset=17, **kwargs):
    """Export ``model`` to ONNX at ``path`` the way pippyc expects.

    * ``args``: a tuple of example inputs (a single tensor is accepted too).
    * ``dynamic_batch``: mark dimension 0 of every input and output as the symbolic dimension ``batch``,
      so the graph reads the batch size with Shape/Gather rather than baking it in (pippyc splits the
      batch into microbatches).
    * ``opset``: default-domain opset (14 decomposes LayerNorm; 17 has LayerNormalization).
    * ``dynamic_axes``: given explicitly, it replaces the batch-axis default (e.g. for a model whose
      output is a scalar loss: ``{"x": {0: "batch"}, "target": {0: "batch"}}``).
    * Other keyword arguments go to ``torch.onnx.export`` (e.g. ``training``, ``do_constant_folding``).

    Uses the TorchScript-based exporter (``dynamo=False``) and registers the ``pippy`` domain so
    :func:`pipe_split` nodes are valid ONNX.
    """
    if isinstance(args, torch.Tensor):
        args = (args,)
    input_names = list(input_names)
    output_names = list(output_names)
    dynamic_axes = kwargs.pop("dynamic_axes", None)
    if dynamic_axes is None and dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in input_names + output_names}
    custom_opsets = dict(kwargs.pop("custom_opsets", {}) or {})
    custom_opsets.setdefault(PIPPY_DOMAIN, PIPPY_DOMAIN_VERSION)
    kwargs.setdefault("do_constant_folding", True)
    torch.onnx.export(
        model,
        tuple(args),
        path,
        input_names=input_names,
        output_names=output_names,
        dynamic_axes=dynamic_axes,
        opset_version=opset,
        custom_opsets=custom_opsets,
        dynamo=False,
        **kwargs,
    )
    return path


def strip_pipe_splits(model_proto):
    """Return a copy of an ``onnx.ModelProto`` with every pippy::PipeSplit node turned into an Identity
    (for running the model in ONNX Runtime or other tools that do not know the pippy domain)."""
    import copy

    m = copy.deepcopy(model_proto)
    for node in m.graph.node:
        if node.op_type == PIPE_SPLIT_OP and node.domain == PIPPY_DOMAIN:
            node.op_type = "Identity"
            node.domain = ""
    return m


def drop_unused_pippy_opset(model_proto):
    """Remove the ``pippy`` opset import from an ``onnx.ModelProto`` that has no pippy node (:func:`export`
    always registers the domain). Changes the model in place and returns it."""
    if not any(n.domain == PIPPY_DOMAIN for n in model_proto.graph.node):
        keep = [o for o in model_proto.opset_import if o.domain != PIPPY_DOMAIN]
        del model_proto.opset_import[:]
        model_proto.opset_import.extend(keep)
    return model_proto
