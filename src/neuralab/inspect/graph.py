"""The autograd graph of one training step, from the loss back to every parameter, as text and as a figure.

`backward()` walks the same graph: each node is a backward function (`loss.grad_fn` and its
`next_functions`), and an AccumulateGrad node is a leaf whose `.variable` is the tensor that
receives `.grad`, here a model parameter.
"""

from collections import deque
from dataclasses import dataclass, field

from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor, nn

from neuralab.inspect.figures import figure_style, new_figure

NODE_COLOURS = {"loss": "#f4a6a6", "operation": "#dde6f5", "parameter": "#b9e3b0", "other leaf": "#eeeeee"}


@dataclass
class GraphNode:
    """One backward function of the graph."""

    index: int
    name: str  # the backward function's class name, e.g. "AddmmBackward0"
    parameter: str | None = None  # for an AccumulateGrad node: the model parameter's name
    shape: tuple[int, ...] | None = None  # for an AccumulateGrad node: the leaf tensor's shape
    children: list[int] = field(default_factory=list)  # the nodes that receive this node's gradients

    @property
    def kind(self) -> str:
        if self.index == 0:
            return "loss"
        if self.name == "AccumulateGrad":
            return "parameter" if self.parameter is not None else "other leaf"
        return "operation"

    def label(self, separator: str = " -> ") -> str:
        """Return the function's name, and for a leaf the tensor it accumulates into, e.g. "AccumulateGrad -> fc.bias (10)"."""
        if self.name != "AccumulateGrad":
            return self.name
        shape = "(" + ", ".join(map(str, self.shape or ())) + ")"
        return f"{self.name}{separator}{self.parameter or 'leaf tensor'} {shape}"


def autograd_graph(loss: Tensor, model: nn.Module) -> list[GraphNode]:
    """Return the nodes reachable from `loss.grad_fn`, breadth first; node 0 is the loss's own backward function.

    Raises ValueError when `loss` has no grad_fn (it was computed without gradient tracking).
    """
    if loss.grad_fn is None:
        raise ValueError("the loss has no grad_fn, so no autograd graph was recorded; compute it with gradients "
                         "enabled and with parameters that require grad")
    parameter_names = {id(parameter): name for name, parameter in model.named_parameters()}
    # Keyed by the function object itself, which keeps every visited function alive while walking.
    indices = {loss.grad_fn: 0}
    nodes = [GraphNode(0, type(loss.grad_fn).__name__)]
    queue = deque([loss.grad_fn])
    while queue:
        function = queue.popleft()
        node = nodes[indices[function]]
        for child, _ in function.next_functions:
            if child is None:  # an input that needs no gradient
                continue
            if child not in indices:
                indices[child] = len(nodes)
                nodes.append(_node(len(nodes), child, parameter_names))
                queue.append(child)
            node.children.append(indices[child])
    return nodes


def _node(index: int, function, parameter_names: dict[int, str]) -> GraphNode:
    node = GraphNode(index, type(function).__name__)
    variable = getattr(function, "variable", None)
    if variable is not None:
        node.parameter = parameter_names.get(id(variable))
        node.shape = tuple(variable.shape)
    return node


def reached_parameters(nodes: list[GraphNode]) -> list[str]:
    """Return the names of the model parameters that are leaves of the graph, in graph order."""
    return [node.parameter for node in nodes if node.parameter is not None]


def graph_text(nodes: list[GraphNode]) -> str:
    """Return the graph as an indented tree from the loss; a node reached a second time is referred back to."""
    lines: list[str] = []
    printed: set[int] = set()
    # Depth-first with an explicit stack: (node, indent, branch drawing, whether it is its parent's last child).
    stack = [(0, "", "", True)]
    while stack:
        index, prefix, branch, last = stack.pop()
        node = nodes[index]
        if index in printed:
            lines.append(f"{prefix}{branch}{node.label()} [#{index}, shown above]")
            continue
        printed.add(index)
        lines.append(f"{prefix}{branch}{node.label()} [#{index}]")
        child_prefix = prefix
        if branch:  # the root has no branch, so its children start at the left margin
            child_prefix += "   " if last else "│  "
        children = node.children
        for position in reversed(range(len(children))):
            is_last = position == len(children) - 1
            stack.append((children[position], child_prefix, "└─ " if is_last else "├─ ", is_last))
    return "\n".join(lines)


def _levels(nodes: list[GraphNode]) -> list[int]:
    """Return each node's level: its longest path from the loss, so every edge points down the figure."""
    order = _topological_order(nodes)
    levels = [0] * len(nodes)
    for index in order:
        for child in nodes[index].children:
            levels[child] = max(levels[child], levels[index] + 1)
    return levels


def _topological_order(nodes: list[GraphNode]) -> list[int]:
    incoming = [0] * len(nodes)
    for node in nodes:
        for child in node.children:
            incoming[child] += 1
    ready = deque(index for index, count in enumerate(incoming) if count == 0)
    order = []
    while ready:
        index = ready.popleft()
        order.append(index)
        for child in nodes[index].children:
            incoming[child] -= 1
            if incoming[child] == 0:
                ready.append(child)
    return order


def graph_figure(nodes: list[GraphNode], title: str) -> Figure:
    """Draw the graph top-down: the loss at the top, parameters as green leaves, arrows in the backward direction."""
    levels = _levels(nodes)
    rows: dict[int, list[int]] = {}
    for index, level in enumerate(levels):
        rows.setdefault(level, []).append(index)
    width = max(len(row) for row in rows.values())
    positions = {index: ((slot + 0.5) / len(row) * width, -level)
                 for level, row in rows.items() for slot, index in enumerate(row)}

    with figure_style():
        figure, grid = new_figure(1, 1, (max(8.0, 2.3 * width), 0.55 * len(rows) + 1.6))
        axes = grid[0, 0]
        boxes = [axes.text(*positions[node.index], node.label("\n"), ha="center", va="center", fontsize=8,
                           bbox={"boxstyle": "round,pad=0.25", "facecolor": NODE_COLOURS[node.kind],
                                 "edgecolor": "0.4"}).get_bbox_patch() for node in nodes]
        for node in nodes:
            for child in node.children:
                # patchA and patchB clip the arrow at the box edges, so every arrowhead stays visible.
                axes.annotate("", xy=positions[child], xytext=positions[node.index],
                              arrowprops={"arrowstyle": "->", "color": "0.5", "patchA": boxes[node.index],
                                          "patchB": boxes[child]})
        axes.set_xlim(0, width)
        axes.set_ylim(-len(rows) + 0.4, 0.6)
        axes.set_axis_off()
        axes.set_title(title)
        handles = [Patch(facecolor=colour, edgecolor="0.4", label=kind) for kind, colour in NODE_COLOURS.items()]
        axes.legend(handles=handles, loc="upper left", fontsize=8)
    return figure
