"""Command-line flags of the texture pipeline (also Beam PipelineOptions)."""

from __future__ import annotations

from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions,
                                                  PipelineOptions, StandardOptions)

from transforms.errors import named
from transforms.io.model import describe_model
from transforms.io.vector import describe_objects
from transforms.records import (COMPRESSIONS, DEFAULTS, MODES, QUANTIZE_KINDS,
                                ParameterError, TextureParams, check_model_mode,
                                check_objects_mode)
from transforms.texture import ACCELERATOR_CHOICES


def is_dataflow(options: PipelineOptions) -> bool:
    """Whether the pipeline runs on Dataflow (no local exit code, no local files)."""
    return "dataflow" in str(options.view_as(StandardOptions).runner or "").lower()


# Experiments every Dataflow job of this pipeline needs, whoever launches it. Without
# no_use_multiple_sdk_containers, Beam's Dataflow client asks for one SDK process per
# vCPU (it adds use_multiple_sdk_containers unless the pipeline's own experiments
# say otherwise), and each would load its own TensorFlow onto the one GPU.
# Each with the experiment that says the opposite: a caller who passed that keeps it.
DATAFLOW_EXPERIMENTS = {"use_runner_v2": "disable_runner_v2",
                        "no_use_multiple_sdk_containers": "use_multiple_sdk_containers"}


def add_dataflow_experiments(options: PipelineOptions) -> None:
    """Adds :data:`DATAFLOW_EXPERIMENTS` to ``options``, except where the caller
    explicitly asked for the opposite."""
    debug = options.view_as(DebugOptions)
    present = set(debug.experiments or ())
    for experiment, opposite in DATAFLOW_EXPERIMENTS.items():
        if experiment not in present and opposite not in present:
            debug.add_experiment(experiment)


def tile_accelerator_hint(options: PipelineOptions):
    """``--tile-accelerator`` checked: the accelerator resource hint for the tile
    steps, or None.

    Raises:
      ValueError: a hint without ``type:`` or a positive ``count:``, or a job that
        also asks for GPUs on every worker (the ``worker_accelerator`` experiment or
        service option: Dataflow's right fitting must not be combined with it).
    """
    hint = options.view_as(TextureOptions).tile_accelerator
    if not hint:
        return None
    fields = dict(field.split(":", 1) if ":" in field else (field, "")
                  for field in (f.strip() for f in hint.split(";")) if field)
    if not fields.get("type") or not fields.get("count", "").isdigit() \
            or int(fields["count"]) < 1:
        raise ValueError(f"--tile-accelerator {hint!r} must name the GPU type and a "
                         f"positive count, e.g. type:nvidia-l4;count:1;"
                         f"install-nvidia-driver")
    asked = [*(options.view_as(DebugOptions).experiments or ()),
             *(options.view_as(GoogleCloudOptions).dataflow_service_options or ())]
    if any(item.startswith("worker_accelerator") for item in asked):
        raise ValueError("--tile-accelerator puts GPUs on the tile steps' workers only; "
                         "drop the worker_accelerator experiment or service option, "
                         "which puts them on every worker (Dataflow's right fitting "
                         "must not be combined with it)")
    return hint


def _switch(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


class TextureOptions(PipelineOptions):
    """The pipeline's own flags (README "Flags"); any other Beam option (--runner, ...)
    passes through."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", action="append", default=None,
                            help="glob, directory, @file listing URIs, or a STAC Item / "
                                 "ItemCollection JSON (with --asset); local or gs://; "
                                 "repeatable (default: the built-in sample, run_local.sh)")
        parser.add_argument("--asset", action="append", default=None,
                            help="STAC asset(s) to read as bands of each item (e.g. nir, "
                                 "B08, or nir,red); repeatable, in output order")
        parser.add_argument("--output", default="./output",
                            help="local directory or gs:// prefix (default ./output)")
        # defaults: transforms.records.DEFAULTS, as text (declared there once)
        d = {name: _text(value) for name, value in DEFAULTS.items()}
        parser.add_argument("--features", default=d["features"],
                            help="comma list of feature names or Earth Engine aliases "
                                 f"(default {d['features']})")
        parser.add_argument("--window", type=int, default=DEFAULTS["window"],
                            help=f"odd window size in pixels, 3..63 (default {d['window']})")
        parser.add_argument("--distances", default=d["distances"],
                            help=f"comma list of pixel distances (default {d['distances']})")
        parser.add_argument("--angles", default=d["angles_degrees"],
                            help="comma list of angles in degrees, scikit-image "
                                 f"convention (default {d['angles_degrees']})")
        parser.add_argument("--levels", type=int, default=DEFAULTS["levels"],
                            help="grey levels after quantization, 2..65536 (default "
                                 f"{d['levels']})")
        parser.add_argument("--quantize", default=d["quantize"],
                            help=f"{QUANTIZE_KINDS}; per scene and band (default "
                                 f"{d['quantize']})")
        parser.add_argument("--bands", default=DEFAULTS["bands"],
                            help="comma list of 1-based band indexes (default all)")
        parser.add_argument("--mode", default=DEFAULTS["mode"], choices=list(MODES),
                            help="pixel: a texture map per pixel (default); block: one "
                                 "feature vector per block x block cell; objects: one "
                                 "feature vector per polygon of --objects")
        parser.add_argument("--block", type=int, default=DEFAULTS["block"],
                            help=f"block size for --mode block (default {d['block']})")
        parser.add_argument("--tile", type=int, default=DEFAULTS["tile"],
                            help=f"largest tile core in pixels: each scene is cut into the "
                                 f"fewest cores of at most this size, as even as possible; "
                                 f"halo added (default {d['tile']})")
        parser.add_argument("--model", default=DEFAULTS["model"],
                            help="a trained Keras model (.keras, local or gs://) taking "
                                 "(batch, H, W, bands) float32 with NaN where invalid and "
                                 "returning (batch, H, W, K): its output is written "
                                 "(predictions.tif) instead of texture features")
        parser.add_argument("--model-halo", "--model_halo", dest="model_halo", type=int,
                            default=None,
                            help="pixels each tile reads around its core for --model "
                                 "(default: derived from the model's layers)")
        parser.add_argument("--classes", default=DEFAULTS["classes"],
                            help="comma list naming the model's K outputs; also writes "
                                 "classes.tif, the arg-max (default p0..pK-1, no "
                                 "classes.tif)")
        parser.add_argument("--objects", default=DEFAULTS["objects"],
                            help="for --mode objects: a vector file of polygons "
                                 "(GeoPackage, GeoJSON, Shapefile, GeoParquet...; local or "
                                 "gs://), in any CRS")
        parser.add_argument("--object-id", "--object_id", dest="object_id", default=None,
                            help="for --mode objects: the field of --objects that "
                                 "identifies each polygon (unique values)")
        parser.add_argument("--cog-compression", "--cog_compression",
                            dest="cog_compression", default=DEFAULTS["cog_compression"],
                            help=f"codec of the COG outputs: {', '.join(COMPRESSIONS)} "
                                 "(all read by GDAL 3.x and QGIS; zstd writes fast and "
                                 "small, zstd-fast without a predictor uses less CPU "
                                 "for files 12-14%% larger, deflate is for readers "
                                 "built without libzstd; default "
                                 f"{d['cog_compression']})")
        # Switches also take =true/=false: Flex Templates pass every parameter that way.
        parser.add_argument("--force", type=_switch, nargs="?", const=True, default=False,
                            metavar="true|false", help="recompute scenes that are already finished")
        parser.add_argument("--fail-on-error", "--fail_on_error", dest="fail_on_error",
                            type=_switch, nargs="?", const=True, default=False,
                            metavar="true|false", help="exit non-zero when any scene or tile failed (on "
                                 "Dataflow: the job fails, after errors.jsonl is "
                                 "written)")
        parser.add_argument("--accelerator", default="optional",
                            choices=list(ACCELERATOR_CHOICES),
                            help="required: fail at start-up on a worker whose TensorFlow "
                                 "sees no GPU (run_dataflow.sh sets it with --gpu-type); "
                                 "optional: the GPU when there is one (default); none: "
                                 "compute on the CPU")
        parser.add_argument("--tiles-per-call", "--tiles_per_call", dest="tiles_per_call",
                            type=int, default=1,
                            help="tiles of one shape computed in one model call (default "
                                 "1; run_dataflow.sh sets 4 with a GPU: a GPU computes "
                                 "several at once faster, a CPU does not)")
        parser.add_argument("--tile-accelerator", "--tile_accelerator",
                            dest="tile_accelerator", default=None,
                            metavar="HINT",
                            help="Dataflow right fitting: the GPU workers for the tile "
                                 "steps only (read, texture, save), as an accelerator "
                                 "resource hint (type:GPU;count:N;install-nvidia-driver"
                                 "[;machine_type:M]); planning and the mosaics run on the "
                                 "job's own workers (--worker_machine_type, no GPU) "
                                 "after every tile is saved. run_dataflow.sh sets it "
                                 "with --mosaic-machine-type (docs/cloud.md)")
        parser.add_argument("--verbose", "-v", type=_switch, nargs="?", const=True,
                            default=False, metavar="true|false",
                            help="also show the log lines of Beam, TensorFlow and the "
                                 "other libraries (default: only the pipeline's own)")


def _text(value) -> str:
    """A default as the command line writes it: ``1``, ``0,45,90,135``."""
    if isinstance(value, (tuple, list)):
        return ",".join(_text(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flag_names() -> dict:
    """{parameter: flag} for every pipeline flag (``bands`` -> ``--bands``): the
    command line puts the flag before a message about that parameter."""
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    TextureOptions._add_argparse_args(parser)
    return {action.dest: action.option_strings[0] for action in parser._actions}


def params_from(options: PipelineOptions, read_inputs: bool = True) -> TextureParams:
    """Checks every flag before any work starts.

    Args:
      read_inputs: read and describe ``--model`` (its channels, outputs and halo,
        against --bands and --classes) and ``--objects`` (the polygons, checked).
        False checks every other flag without touching those files (the Dataflow
        launcher on the user's machine: the job reads them at launch, with the job's
        credentials); the parameters then have no model and no polygons (and mode
        objects is checked as pixel).

    Raises:
      ValueError: naming the flag and what to fix (the core's own message, with the
        flag's name added).
    """
    o = options.view_as(TextureOptions)
    try:
        bands = _numbers(o.bands, "bands", int) if o.bands else None
        if o.model_halo is not None and not o.model:
            raise ParameterError("model_halo", "the halo is a model's: give the model too")
        if o.tiles_per_call < 1:
            raise ParameterError("tiles_per_call", f"give at least 1 tile per model call, "
                                                   f"got {o.tiles_per_call}")
        if o.model_halo is not None and o.model_halo < 0:
            raise ParameterError("model_halo", f"the halo must be >= 0 pixels, got "
                                               f"{o.model_halo}")
        if o.model:
            check_model_mode(o.mode)  # before reading the model
        model = describe_model(o.model, o.model_halo) if o.model and read_inputs else None
        objects, mode = _objects(o, read_inputs)
        params = TextureParams.create(
            features=o.features, window=o.window,
            distances=_numbers(o.distances, "distances", float),
            angles_degrees=_numbers(o.angles, "angles", float), levels=o.levels,
            quantize=o.quantize, bands=bands, mode=mode, block=o.block, tile=o.tile,
            model=model, classes=o.classes.split(",") if o.classes and model else None,
            objects=objects, cog_compression=o.cog_compression)
    except ParameterError as exc:
        raise ValueError(named(str(exc), exc.parameter, flag_names())) from None
    if is_dataflow(options) and not str(o.output).startswith("gs://"):
        raise ValueError(f"--output {o.output!r} is local, but Dataflow workers can only "
                         f"write to Cloud Storage: use --output gs://BUCKET/prefix")
    return params


def _objects(o, read_inputs):
    """(the polygons described, or None; the mode to check the other flags with)."""
    if o.object_id is not None and not o.objects:
        raise ParameterError("object_id", "the id field is the polygons': give the "
                                          "objects file too")
    if o.mode != "objects":
        check_objects_mode(o.mode, o.objects or None, None)  # no polygons in this mode
    if o.mode != "objects" or not o.objects:
        return None, o.mode  # the parameters' own check says what is missing
    if not o.object_id:
        raise ParameterError("object_id", f"name the field of {o.objects} that "
                                          f"identifies each polygon")
    if not read_inputs:
        return None, "pixel"
    return describe_objects(o.objects, o.object_id), o.mode


def _numbers(text, parameter, cast):
    """A comma list of numbers; ParameterError naming ``parameter`` otherwise."""
    try:
        values = tuple(cast(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise ParameterError(parameter, f"must be a comma list of numbers, got "
                                        f"{text!r}") from None
    if not values:
        raise ParameterError(parameter, "is empty")
    return values
