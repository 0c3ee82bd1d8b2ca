"""`neuralab inspect RUN_DIR|RECIPE`: layer table, autograd graph of one training step, or one neuron's computation."""

import argparse
import json
from pathlib import Path

from neuralab.inspect.figures import save_figure
from neuralab.inspect.graph import autograd_graph, graph_figure, graph_text, reached_parameters
from neuralab.inspect.layers import format_bytes, format_shape, layer_table, totals
from neuralab.inspect.neuron import neuron_computation, parse_neuron
from neuralab.inspect.target import InspectionTarget, load_image, load_target
from neuralab.nn import build_loss
from neuralab.training.engine import Trainer

# Rows of the neuron's largest contributions w_i * x_i that are printed.
TOP_CONTRIBUTIONS = 10


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "inspect", help="show a model's layers, the autograd graph of one training step, or one neuron",
        description="Print the layer table (output shape for one input, parameters, trainable, memory) and the "
        "autograd graph of one training step, from the loss back to every parameter, and draw the graph to a PNG "
        "file. With --neuron, print one neuron's computation instead.",
    )
    parser.add_argument("target", metavar="RUN_DIR|RECIPE",
                        help="a run directory (trained weights) or a recipe name (untrained model, seeded by the "
                        "recipe's seed)")
    parser.add_argument("--graph-output", type=Path, metavar="FILE",
                        help="PNG file for the graph (default: RUN_DIR/autograd_graph.png, or "
                        "plots/RECIPE-autograd_graph.png)")
    parser.add_argument("--neuron", metavar="LAYER:INDEX",
                        help="show neuron INDEX of Linear layer LAYER, e.g. hidden.0:5 (layer names: see the table)")
    parser.add_argument("--image", type=Path, metavar="FILE", help="input image for --neuron (default: the first "
                        "test image); resized to the model's input and normalized like the training data")
    parser.add_argument("--target-class", type=int, metavar="CLASS",
                        help="class index whose loss gives the --neuron gradient (default: the predicted class)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON, with every value")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    if args.neuron is not None:
        return _show_neuron(args, target)
    if args.image is not None or args.target_class is not None:
        raise ValueError("--image and --target-class apply only with --neuron LAYER:INDEX")
    rows = layer_table(target.model, target.images[:1])
    nodes = autograd_graph(_training_step_loss(target), target.model)
    path = save_figure(graph_figure(nodes, f"Autograd graph of one training step: {Path(args.target).name}"),
                       args.graph_output or _default_graph_path(args.target))
    if args.json:
        print(json.dumps({"layers": [row.__dict__ for row in rows], "totals": totals(target.model),
                          "graph": [node.__dict__ for node in nodes], "graph_figure": str(path)}, indent=2))
        return 0
    _print_layers(target, rows)
    _print_graph(target, nodes)
    print(f"\ngraph figure: {path}")
    return 0


def _default_graph_path(text: str) -> Path:
    if Path(text).is_dir():
        return Path(text) / "autograd_graph.png"
    return Path("plots") / f"{text}-autograd_graph.png"


def _training_step_loss(target: InspectionTarget):
    """Return the loss of one training-mode forward pass on the sample images, with its autograd graph."""
    model = target.model
    model.train()
    loss_fn = build_loss(target.config.train.loss, model.head)
    return loss_fn(model(target.images), target.targets)


def _print_layers(target: InspectionTarget, rows) -> None:
    state = "trained" if target.trained else "untrained"
    print(f"{target.config.model.name} ({state}), input {format_shape((1, *target.in_shape))}, "
          f"{len(target.classes)} classes")
    width = max(len(row.name) for row in rows)
    print(f"\n{'layer':<{width}}  {'type':<17} {'output shape':<20} {'parameters':>11}  trainable  memory")
    for row in rows:
        shape = format_shape(row.output_shape) + (f" x{row.calls}" if row.calls > 1 else "")
        print(f"{row.name:<{width}}  {row.kind:<17} {shape:<20} {row.parameters:>11,}  {row.trainable:<9}  "
              f"{format_bytes(row.memory_bytes)}")
    count = totals(target.model)
    print(f"{'total':<{width}}  {'':<17} {'':<20} {count['parameters']:>11,}  {count['trainable']:,} trainable, "
          f"{format_bytes(count['memory_bytes'])}")


def _print_graph(target: InspectionTarget, nodes) -> None:
    parameters = [name for name, _ in target.model.named_parameters()]
    reached = reached_parameters(nodes)
    print(f"\nautograd graph of one training step on {len(target.images)} images ({target.note}), from the loss back "
          "to the parameters (backward() follows grad_fn.next_functions; AccumulateGrad writes a parameter's .grad):")
    print(graph_text(nodes))
    missing = [name for name in parameters if name not in reached]
    print(f"{len(nodes)} nodes; {len(reached)} of {len(parameters)} parameters reached from the loss"
          + (f"; not reached: {', '.join(missing)}" if missing else ""))


def _show_neuron(args: argparse.Namespace, target: InspectionTarget) -> int:
    layer, index = parse_neuron(args.neuron)
    model = target.model
    if args.image is not None:
        image, source = load_image(args.image, target.in_shape, target.mean, target.std), str(args.image)
    else:
        image, source = target.images[:1], f"test image 0 (true class {target.classes[int(target.targets[0])]})"
    trainer = Trainer(model, build_loss(target.config.train.loss, model.head), None, None, image.device,
                      binary_threshold=0.5 if model.head in ("sigmoid", "softmax") else 0.0)
    if args.target_class is not None and not 0 <= args.target_class < len(target.classes):
        raise ValueError(f"--target-class must be in 0..{len(target.classes) - 1}, got {args.target_class}")
    result = neuron_computation(model, image, trainer.loss_fn, trainer.classes_of, layer, index, args.target_class)
    result["image"] = source
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    _print_neuron(result, target, trainer.loss_fn.name)
    return 0


def _print_neuron(result: dict, target: InspectionTarget, loss_name: str) -> None:
    inputs, weights, products = result["inputs"], result["weights"], result["products"]
    gradients = result["grad_weights"]
    print(f"neuron {result['layer']}:{result['index']} on {result['image']}: {len(inputs)} inputs x_i, "
          f"{len(weights)} weights w_i")
    print(f"\nlargest contributions |w_i * x_i| ({TOP_CONTRIBUTIONS} of {len(inputs)}):")
    print(f"{'i':>6} {'x_i':>10} {'w_i':>10} {'w_i * x_i':>11} {'dL/dw_i':>11}")
    order = sorted(range(len(products)), key=lambda i: -abs(products[i]))[:TOP_CONTRIBUTIONS]
    for i in order:
        print(f"{i:>6} {inputs[i]:>10.4f} {weights[i]:>10.4f} {products[i]:>11.4f} {gradients[i]:>11.3e}")
    print(f"\nweighted sum   sum_i w_i * x_i = {result['weighted_sum']:.6f}")
    print(f"bias           b               = {result['bias']:.6f}")
    print(f"pre-activation z = sum + b     = {result['pre_activation']:.6f}  "
          f"(inside the model's forward pass: {result['pre_activation_model']:.6f})")
    print(f"activation     {result['activation']}: output {result['output']:.6f}  "
          f"(in the model: {result['output_model']:.6f})")
    classes = target.classes
    print(f"\ngradient of the {loss_name} loss {result['loss']:.4f} for class {classes[result['target']]} "
          f"(predicted: {classes[result['predicted']]}):")
    print(f"  dL/dz   = {result['grad_pre_activation']:.6e}")
    print(f"  dL/db   = {result['grad_bias']:.6e}" if result["grad_bias"] is not None else "  the layer has no bias")
    norm = sum(value * value for value in gradients) ** 0.5
    print(f"  dL/dw_i = dL/dz * x_i for every input; |dL/dw| = {norm:.6e}")
