"""The report of a run: PNG figures in RUN_DIR/report/ and one self-contained RUN_DIR/report.html.

Everything is read back from the run directory (configuration, metrics, summary, stats.json and
the start and final weights), so `neuralab report RUN_DIR` draws the same report that training
wrote. Classification runs show the confusion matrix, per-class scores, the most-confused pairs
and the highest-loss test images; segmentation runs show predicted masks and per-class IoU.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from neuralab.config import RunConfig, to_yaml
from neuralab.data.batches import BatchLoader
from neuralab.data.prepare import Split, build_loader, prepare_test_data
from neuralab.data.streaming import FIXED, StreamedSplit
from neuralab.inspect import evaluation_figures, training_figures
from neuralab.inspect.figures import save_figure
from neuralab.inspect.html_report import Section, preformatted_html, render_page
from neuralab.inspect.layers import format_bytes, format_shape, layer_table, totals
from neuralab.inspect.recorder import read_stats
from neuralab.inspect.weights import first_layer_images, first_weight_layer, weight_layer_names
from neuralab.nn import build_loss
from neuralab.training.checkpoint import write_text
from neuralab.training.engine import Trainer
from neuralab.training.inference import load_model
from neuralab.training.runs import RunDir

logger = logging.getLogger(__name__)

HIGHEST_LOSS_COUNT = 18  # three rows of six images
MAX_CONFUSED_PAIRS = 5
SEGMENTATION_EXAMPLES = 4
PREDICTION_BATCH = 500

NO_STATS_NOTE = ("This run has no stats.json, so gradient norms, activation statistics and the start weights "
                 "were not recorded (it was trained before neuralab recorded them).")


@dataclass
class RunContents:
    """Everything the report draws, read from one run directory."""

    run: RunDir
    config: RunConfig
    model: nn.Module
    metadata: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    stats: dict[str, Any] | None
    end_state: dict[str, Tensor]
    start_state: dict[str, Tensor] | None
    test: Split | None
    saved: list[Path] = field(default_factory=list)  # figures written by this report

    @property
    def classes(self) -> list[str]:
        return list(self.metadata["classes"])

    def save(self, name: str, figure) -> Path:
        path = save_figure(figure, self.run.report_dir / f"{name}.png")
        self.saved.append(path)
        return path


def _load_state(path: Path) -> dict[str, Tensor]:
    return {key: value.float() if value.is_floating_point() else value for key, value in load_file(str(path)).items()}


def read_run(run_dir: Path) -> RunContents:
    """Read a finished run: its model, metrics, summary, statistics, start and final weights and test split."""
    run = RunDir.open(run_dir)
    model, metadata, config = load_model(run.path)
    if not run.summary_path.is_file():
        raise FileNotFoundError(f"{run.summary_path}: no summary; the run has not finished. "
                                f"Resume it with `neuralab train --resume {run.path}`")
    start_state = _load_state(run.start_weights_path) if run.start_weights_path.is_file() else None
    test = prepare_test_data(config.data, tuple(metadata["classes"]), tuple(metadata["model"]["in_shape"]))
    summary = run.read_summary()
    if isinstance(test, StreamedSplit):
        test, note = _in_memory(test)
        if note:
            summary["test_note"] = note
    return RunContents(run, config, model, metadata, run.read_metrics(), summary, read_stats(run),
                       _load_state(run.weights_path), start_state, test)


def _in_memory(test: StreamedSplit) -> tuple[Split | None, str | None]:
    """Decode a test split streamed from disk into memory, or return a note when its images differ in size."""
    if test.mode != FIXED:
        return None, ("The test images are streamed from disk at their own sizes, so the report leaves out the "
                      "sections that need every test image; `neuralab evaluate` reports their metrics.")
    batches = list(build_loader(test, PREDICTION_BATCH, shuffle=False))
    return Split(torch.cat([images for images, _ in batches]), torch.cat([targets for _, targets in batches])), None


def write_report(run_dir: Path) -> Path:
    """Write the run's figures to RUN_DIR/report/ and its report to RUN_DIR/report.html; return the HTML path."""
    contents = read_run(run_dir)
    sections = [overview_section(contents), curves_section(contents)]
    if contents.metadata["task"] == "segmentation":
        sections += segmentation_sections(contents)
    else:
        sections += classification_sections(contents)
    sections += [weights_section(contents), first_layer_section(contents), gradient_section(contents),
                 activation_section(contents), parameters_section(contents)]
    title = f"neuralab report: {contents.run.path.name}"
    write_text(contents.run.report_path, render_page(title, sections))
    # The report owns report/, so it deletes the figures of an earlier report that this one did not draw.
    for stale in set(contents.run.report_dir.glob("*.png")) - set(contents.saved):
        stale.unlink()
    logger.info("wrote %s with %d sections", contents.run.report_path, len(sections))
    return contents.run.report_path


def _test_headline(summary: dict[str, Any]) -> list[list[object]]:
    if not summary.get("test_samples"):
        return [["test set", summary.get("test_note", "none")]]
    rows: list[list[object]] = [["test images", summary["test_samples"]], ["test loss", summary["test_loss"]]]
    if summary.get("task") == "segmentation":
        rows += [["test pixel accuracy", f"{100 * summary['test_accuracy']:.2f}%"],
                 ["mean IoU without background", summary.get("mean_iou_without_background")]]
    else:
        rows.append(["test accuracy", f"{100 * summary['test_accuracy']:.2f}%"])
    return rows


def overview_section(contents: RunContents) -> Section:
    config, summary, count = contents.config, contents.summary, totals(contents.model)
    section = Section("overview", "Overview")
    rows: list[list[object]] = [
        ["recipe", config.recipe],
        ["model", f"{config.model.name} {config.model.options or ''}".strip()],
        ["data set", config.data.dataset],
        ["optimizer", f"{config.optim.optimizer}, lr {config.optim.lr:g}, schedule {config.optim.scheduler}"],
        ["loss", config.train.loss],
        ["epochs trained", summary.get("epochs")],
        ["training time", f"{summary.get('train_seconds', 0.0):.1f} s on {summary.get('threads')} thread(s)"],
        ["parameters", f"{count['parameters']:,} ({format_bytes(count['memory_bytes'])})"],
        *_test_headline(summary),
    ]
    section.add_table(["", "value"], rows)
    section.parts.append(preformatted_html(to_yaml(config), "resolved configuration (config.yaml)"))
    return section


def curves_section(contents: RunContents) -> Section:
    section = Section("curves", "Loss, accuracy and learning rate")
    if not contents.history:
        section.add_note("No epoch finished, so there are no curves.")
        return section
    figure = training_figures.curves_figure(contents.history, contents.stats, contents.config.train.loss)
    section.add_figure(contents.save("curves", figure), "training and validation loss and accuracy per epoch")
    return section


@torch.no_grad()
def _test_outputs(contents: RunContents, count: int | None = None) -> tuple[Tensor, Tensor]:
    """Return (outputs, targets) of the model on the first `count` test images (all when None)."""
    test = contents.test
    images = test.images if count is None else test.images[:count]
    targets = test.targets if count is None else test.targets[:count]
    loader = BatchLoader(images, targets, PREDICTION_BATCH, shuffle=False)
    outputs = torch.cat([contents.model(batch) for batch, _ in loader])
    return outputs, targets


def _trainer(contents: RunContents) -> Trainer:
    head = contents.metadata["head"]
    return Trainer(contents.model, build_loss(contents.config.train.loss, head), None, None, torch.device("cpu"),
                   ignore_index=contents.metadata.get("ignore_index"),
                   binary_threshold=0.5 if head in ("sigmoid", "softmax") else 0.0)


def class_probabilities(outputs: Tensor, head: str) -> Tensor:
    """Return (N, K) class probabilities from a classifier's outputs; one output column becomes two classes."""
    if outputs.shape[1] == 1:
        positive = outputs.sigmoid() if head == "logits" else outputs
        return torch.cat([1.0 - positive, positive], dim=1)  # (N, 1), (N, 1) -> (N, 2)
    if head == "logits":
        return outputs.softmax(dim=1)
    if head == "log_softmax":
        return outputs.exp()
    return outputs


def highest_loss_images(contents: RunContents, count: int = HIGHEST_LOSS_COUNT) -> dict[str, Any]:
    """Return the `count` test images with the highest loss, with targets, predictions, probabilities and losses.

    Each loss is the run's own loss function on that one image.
    """
    trainer = _trainer(contents)
    outputs, targets = _test_outputs(contents)
    losses = torch.stack([trainer.loss_fn(outputs[index:index + 1], targets[index:index + 1])
                          for index in range(len(targets))])
    order = losses.argsort(descending=True)[:count]
    probabilities = class_probabilities(outputs[order], contents.metadata["head"])
    predictions = trainer.classes_of(outputs[order])
    chosen = probabilities.gather(1, predictions.unsqueeze(1)).squeeze(1)  # (K, C) -> (K,)
    return {"indices": order.tolist(), "images": contents.test.images[order], "targets": targets[order].tolist(),
            "predictions": predictions.tolist(), "probabilities": chosen.tolist(), "losses": losses[order].tolist()}


def classification_sections(contents: RunContents) -> list[Section]:
    ids = [("confusion-matrix", "Confusion matrix"), ("per-class", "Precision, recall and F1 per class"),
           ("most-confused", "Most-confused class pairs"), ("highest-loss", "Test images with the highest loss")]
    sections = [Section(section_id, title) for section_id, title in ids]
    summary, classes = contents.summary, contents.classes
    if contents.test is None or "per_class" not in summary:
        for section in sections:
            section.add_note(summary.get("test_note", "This run has no test set."))
        return sections
    confusion, per_class, confused, highest = sections

    confusion.add_figure(contents.save("confusion_matrix", evaluation_figures.confusion_figure(
        summary["confusion_matrix"], classes)), "confusion matrix of the test set")

    scores = summary["per_class"]
    per_class.add_table(["class", "precision", "recall", "F1", "support"], [
        [name, scores["precision"][index], scores["recall"][index], scores["f1"][index], scores["support"][index]]
        for index, name in enumerate(classes)] + [["macro mean", summary["macro"]["precision"],
                                                    summary["macro"]["recall"], summary["macro"]["f1"], ""]])
    per_class.add_figure(contents.save("per_class", evaluation_figures.per_class_figure(scores, classes)),
                         "precision, recall and F1 per class")

    _add_confused_pairs(confused, summary, classes)

    worst = highest_loss_images(contents)
    figure = evaluation_figures.highest_loss_figure(worst["images"], worst["targets"], worst["predictions"],
                                                    worst["probabilities"], worst["losses"], classes)
    highest.add_figure(contents.save("highest_loss", figure), "test images with the highest loss")
    highest.add_note(f"Test-set indices, highest loss first: {', '.join(map(str, worst['indices']))}.")
    return sections


def _add_confused_pairs(section: Section, summary: dict[str, Any], classes: list[str]) -> None:
    pairs = summary.get("most_confused", [])[:MAX_CONFUSED_PAIRS]
    if not pairs:
        section.add_note("No test image was misclassified.")
        return
    support = summary["per_class"]["support"]
    section.add_table(["true class", "predicted as", "test images", "share of the true class"], [
        [classes[pair["true"]], classes[pair["predicted"]], pair["count"],
         f"{100 * pair['count'] / max(support[pair['true']], 1):.1f}%"] for pair in pairs])


def segmentation_sections(contents: RunContents) -> list[Section]:
    masks_section = Section("segmentation", "Predicted masks on test images")
    iou_section = Section("iou", "Intersection over union per class")
    summary, classes = contents.summary, contents.classes
    if contents.test is None or "per_class" not in summary:
        for section in (masks_section, iou_section):
            section.add_note(summary.get("test_note", "This run has no test set."))
        return [masks_section, iou_section]

    outputs, targets = _test_outputs(contents, SEGMENTATION_EXAMPLES)
    predictions = _trainer(contents).classes_of(outputs)
    figure = evaluation_figures.segmentation_figure(contents.test.images[:len(targets)], targets, predictions,
                                                    classes, contents.metadata.get("ignore_index"))
    masks_section.add_figure(contents.save("segmentation", figure), "test images with true and predicted masks")

    scores = summary["per_class"]
    iou_section.add_table(["class", "IoU", "Dice"], [[name, scores["iou"][index], scores["dice"][index]]
                                                     for index, name in enumerate(classes)])
    iou_section.add_note(f"Mean IoU {summary['mean_iou']:.4f}, without background "
                         f"{summary['mean_iou_without_background'] or 0.0:.4f}, over {summary['test_pixels']} pixels; "
                         "n/a marks a class absent from both the masks and the predictions.")
    iou_section.add_figure(contents.save("iou", evaluation_figures.iou_figure(scores["iou"], classes)),
                           "IoU per class")
    return [masks_section, iou_section]


def weights_section(contents: RunContents) -> Section:
    section = Section("weight-histograms", "Weight and bias histograms, start and end")
    layers = weight_layer_names(contents.model)
    figure = training_figures.weight_histogram_figure(contents.end_state, contents.start_state, layers)
    section.add_figure(contents.save("weight_histograms", figure), "weight and bias histograms per layer")
    if contents.start_state is None:
        section.add_note(NO_STATS_NOTE)
    return section


def first_layer_section(contents: RunContents) -> Section:
    section = Section("first-layer", "First layer's weights as images")
    name, _ = first_weight_layer(contents.model)
    images, unit = first_layer_images(contents.end_state[f"{name}.weight"],
                                      tuple(contents.metadata["model"]["in_shape"]))
    figure = training_figures.first_layer_figure(images, name, unit)
    section.add_figure(contents.save("first_layer", figure), "first layer weights drawn as images")
    return section


def gradient_section(contents: RunContents) -> Section:
    section = Section("gradient-norms", "Gradient norm per layer")
    if not contents.stats or not contents.stats["rows"]:
        section.add_note(NO_STATS_NOTE)
        return section
    figure = training_figures.gradient_norm_figure(contents.stats)
    section.add_figure(contents.save("gradient_norms", figure), "gradient norm of each layer over training")
    return section


def activation_section(contents: RunContents) -> Section:
    section = Section("activation-statistics", "Activation statistics per layer")
    if not contents.stats or not contents.stats["rows"]:
        section.add_note(NO_STATS_NOTE)
        return section
    figure = training_figures.activation_figure(contents.stats)
    if figure is None:
        section.add_note("The model has no activation modules, so no activation statistics were recorded.")
        return section
    section.add_figure(contents.save("activation_statistics", figure), "activation statistics over training")
    last = contents.stats["rows"][-1]
    section.add_table(["layer", "activation", "mean", "std", "never fire", "saturated"], [
        [name, kind, *[last["activations"].get(name, {}).get(key) for key in
                       ("mean", "std", "dead_fraction", "saturated_fraction")]]
        for name, kind in contents.stats["activations"].items()])
    section.add_note(f"Table: the last recorded training batch (step {last['step']}). \"never fire\" is the share of "
                     "ReLU units that were 0 for the whole batch; \"saturated\" is the share of sigmoid or tanh "
                     "outputs within 5% of the output range from either limit; n/a where it does not apply.")
    return section


def parameters_section(contents: RunContents) -> Section:
    section = Section("parameters", "Parameters and memory per layer")
    sample = contents.test.images[:1] if contents.test is not None else None
    rows = layer_table(contents.model, sample)
    count = totals(contents.model)
    section.add_table(["layer", "type", "output shape", "parameters", "trainable", "memory"], [
        [row.name, row.kind, format_shape(row.output_shape), f"{row.parameters:,}", row.trainable,
         format_bytes(row.memory_bytes)] for row in rows] + [
        ["total", "", "", f"{count['parameters']:,}", f"{count['trainable']:,} trainable",
         format_bytes(count["memory_bytes"])]])
    section.add_note("Memory counts parameters and buffers (such as batch-norm running statistics) at their "
                     "stored precision; activations and optimizer state come on top during training.")
    return section
