"""The `saeseeds` command line: one subcommand per verb, each a function `cmd_<verb>(args) -> int`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from saeseeds import __version__
from saeseeds.common.process_exit import skip_final_collections
from saeseeds.errors import CalibrationError, CheckpointError, MatchesError, OrphansError, PlanError
from saeseeds.matching.screen_settings import PRECISIONS

NAMED_ERRORS = (CalibrationError, CheckpointError, MatchesError, OrphansError, PlanError)
"""The errors whose message names the culprit: a bad input exits 2 with that one line. They live in
`saeseeds.errors`, which imports nothing, so `saeseeds --help` and `saeseeds plan` import no torch (4-6 s)."""


def cmd_match(args: argparse.Namespace) -> int:
    """Returns 0 after matching two checkpoints and writing the matches parquet; prints one summary line."""
    from saeseeds.matching import match
    from saeseeds.matching.checkpoint_refs import resolve
    from saeseeds.matching.checkpoints import load_dictionaries
    from saeseeds.matching.match import match_dictionaries
    from saeseeds.matching.matches_file import write_matches

    start = time.perf_counter()
    enc_a, dec_a = load_dictionaries(resolve(args.a).path, allow_zero_rows=args.allow_zero_rows)
    enc_b, dec_b = load_dictionaries(resolve(args.b).path, allow_zero_rows=args.allow_zero_rows)
    if enc_a.shape[1] != enc_b.shape[1]:
        raise match.MatchesError(
            f"{args.a} has d_in={enc_a.shape[1]} but {args.b} has d_in={enc_b.shape[1]}: SAEs of different sites cannot be matched"
        )
    df, meta = match_dictionaries(
        enc_a,
        dec_a,
        enc_b,
        dec_b,
        threshold=args.threshold,
        definition=args.definition,
        device=args.device,
        method=args.method,
        max_rounds=args.max_rounds,
        screen=args.screen,
    )
    meta["label"] = f"{args.a} vs {args.b}"
    write_matches(df, meta, args.output)  # an uncertified matching raises here: exit 2, nothing written
    cert = meta["certificate"]
    sizes = f"n={meta['n']}" if "n_b" not in meta else f"n={meta['n']} x {meta['n_b']} (b: {meta['shared_fraction_paper_b']:.2%} shared)"
    print(
        f"{args.output}: {sizes} shared {meta['shared_fraction_paper']:.2%} (paper) "
        f"{meta['shared_fraction_notebook']:.2%} (notebook) at threshold {meta['threshold']}; "
        f"certified={'yes' if meta['certified'] else 'NO'} "
        f"(enc {cert['enc']['method']}, dec {cert['dec']['method']}); {time.perf_counter() - start:.1f} s"
    )
    return 0


def cmd_stability(args: argparse.Namespace) -> int:
    """Returns 0 after writing the per-latent stability table of the checkpoints (parquet or CSV by -o's suffix)
    and, beside it, OUT.sources.json (each checkpoint's layout, folder and hub commit); one line per pair."""
    import json

    from saeseeds.common.atomic import atomic_write
    from saeseeds.stats.stability import output_paths, stability_of_checkpoints, write_stability

    start = time.perf_counter()
    parquet, csv = output_paths(args.output)
    table, meta = stability_of_checkpoints(
        args.checkpoints, threshold=args.threshold, definition=args.definition, device=args.device,
        method=args.method, max_rounds=args.max_rounds, allow_zero_rows=args.allow_zero_rows,
        log=print,
    )
    write_stability(table, meta, parquet=parquet, csv=csv)
    sources = Path(args.output).with_suffix(".sources.json")
    atomic_write(sources, lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"))
    k = len(args.checkpoints)
    everywhere = int((table["n_shared"] == k - 1).sum())
    print(
        f"{args.output}: {len(table)} latents of {k} checkpoints; {everywhere} of them shared with every other checkpoint; "
        f"sources in {sources}; {time.perf_counter() - start:.1f} s"
    )
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    """Returns 0 after printing, per rule, the jobs, GPU-hours, CPU-hours and disk a run would still spend,
    the largest job and caching against computing activations on the fly; with --calibrate, the throughput
    table measured from finished runs instead."""
    if args.calibrate:
        return _calibrate(args)
    from saeseeds.plan.planner import caching_tradeoff, dry_run, largest_job, load_config, parse_jobs, summarize

    jobs = parse_jobs(dry_run(args.directory, args.configfile, cores=args.cores, extra=args.snakemake_args))
    table = summarize(jobs)
    if table.empty:
        print("nothing to do: every output of the study is up to date")
        return 0
    print(table.to_string(index=False, float_format=lambda x: f"{x:,.2f}"))
    total = table.iloc[-1]
    print(
        f"\n{int(total['jobs'])} jobs: {total['gpu_hours']:,.1f} GPU-hours, {total['cpu_hours']:,.1f} CPU-hours, "
        f"{total['disk_gb']:,.1f} GB on disk (runtimes are what jobs reserve: about 2x the expected time)"
    )
    big = largest_job(jobs)
    kind = f"{big.number('gpu'):.0f} GPU" if big.number("gpu") else f"{big.threads} CPUs"
    print(
        f"largest job: {big.rule} ({big.wildcards or 'no wildcards'}): {big.number('runtime') / 60:,.1f} h on {kind}, "
        f"{big.number('mem_mb') / 1000:,.1f} GB memory, {big.number('disk_mb') / 1000:,.1f} GB written"
    )
    tradeoff = caching_tradeoff(load_config(args.directory, args.configfile))
    if len(tradeoff):
        print("\nCaching activations once vs computing them in every training job (expected hours, no margin):")
        print(tradeoff.to_string(index=False, float_format=lambda x: f"{x:,.2f}"))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Prints the throughput measured by the finished runs under --results, as config `cluster.throughput`."""
    import yaml

    from saeseeds.plan.calibrate import measurements, stage_times, throughput_table, tokens_per_second

    found = measurements(args.results)
    for device in sorted({m.device for m in found}):
        for kind in ("forward", "train"):
            n = sum(1 for m in found if m.device == device and m.kind == kind)
            if n:
                print(f"# {kind:7s} on {device}: {n} jobs, {tokens_per_second(found, kind, device):,.0f} tokens/s together")
    stages = stage_times(args.benchmarks)
    total = sum(t.seconds for t in stages)
    for t in stages:  # what each stage's jobs took (Snakemake benchmark files), next to the estimates' reservations
        rss = f", peak {t.max_rss_mb:,.0f} MB" if t.max_rss_mb is not None else ""
        print(f"# stage {t.stage}: {t.jobs} jobs, {t.seconds:,.0f} job-s ({100 * t.seconds / total:.0f}%), longest {t.longest:,.0f} s{rss}")
    print(yaml.safe_dump({"cluster": {"throughput": throughput_table(found, args.gpu_model)}}, sort_keys=True), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser with one subparser per verb."""
    parser = argparse.ArgumentParser(prog="saeseeds", description="Seed-stability studies of sparse autoencoders.")
    parser.add_argument("--version", action="version", version=f"saeseeds {__version__}")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    match = verbs.add_parser(
        "match",
        help="match the latents of two SAE checkpoints (exact Hungarian on encoder and decoder rows)",
        description="Match two checkpoints (sparsify, SAELens or dictionary_learning folders, plain .safetensors/.npz files, or hf://owner/repo@revision/path; sizes may differ) and write one parquet row per latent of A.",
    )
    match.add_argument("a", metavar="A", help="checkpoint folder of SAE a (cfg.json + sae.safetensors or sae_weights.safetensors)")
    match.add_argument("b", metavar="B", help="checkpoint folder of SAE b")
    match.add_argument("-o", "--output", required=True, metavar="OUT.parquet", help="matches file to write")
    match.add_argument("--threshold", type=float, default=0.7, help="cosine a shared latent needs in both matchings (default 0.7)")
    match.add_argument(
        "--definition",
        choices=("paper", "notebook"),
        default="paper",
        help="paper: same partner and both cosines >= threshold; notebook: both cosines > threshold (default paper)",
    )
    match.add_argument("--device", default=None, help="torch device for the similarity (default: cuda if present, else cpu)")
    match.add_argument(
        "--method",
        choices=("auto", "dense", "sparse"),
        default="auto",
        help="auto: dense scipy up to 4096 latents, certified sparse above (default auto)",
    )
    match.add_argument(
        "--screen",
        choices=PRECISIONS,
        default="auto",
        help="the sparse path's screening matmul, under a proven error bound: int8 with int32 sums on a CPU where it pays "
        "(auto), else bf16 where the hardware multiplies it natively, else fp32; speed only, the optimum is over the exact "
        "cosines either way (default auto)",
    )
    match.add_argument(
        "--max-rounds", type=int, default=100,
        help="repair rounds of the sparse solver; a matching still not certified optimal then fails (exit 2, no file)",
    )
    match.add_argument(
        "--allow-zero-rows",
        action="store_true",
        help="accept latents whose encoder or decoder row is all zeros (matched with cosine 0) instead of failing",
    )
    match.set_defaults(func=cmd_match)

    stab = verbs.add_parser(
        "stability",
        help="per-latent stability table of several checkpoints (any layout, any sizes), by original latent id",
        description=(
            "Match every pair of checkpoints (sparsify, SAELens, dictionary_learning folders, plain .safetensors/.npz "
            "files, or hf://owner/repo@revision/path) and write one row per (checkpoint, latent): n_shared, then per "
            "checkpoint L its partner_L, enc_cos_L, dec_partner_L, dec_cos_L, shared_L."
        ),
    )
    stab.add_argument("checkpoints", nargs="+", metavar="DIR", help="checkpoint folders, files or hub references (at least 2)")
    stab.add_argument("-o", "--output", required=True, metavar="OUT.parquet|OUT.csv", help="table to write")
    stab.add_argument("--threshold", type=float, default=0.7, help="cosine a shared latent needs in both matchings (default 0.7)")
    stab.add_argument("--definition", choices=("paper", "notebook"), default="paper", help="shared definition (default paper)")
    stab.add_argument("--device", default=None, help="torch device for the similarity (default: cuda if present, else cpu)")
    stab.add_argument("--method", choices=("auto", "dense", "sparse"), default="auto", help="as for match (default auto)")
    stab.add_argument("--max-rounds", type=int, default=100, help="repair rounds of the sparse solver before failing (default 100)")
    stab.add_argument("--allow-zero-rows", action="store_true", help="accept latents with an all-zero encoder or decoder row")
    stab.set_defaults(func=cmd_stability)

    plan = verbs.add_parser(
        "plan",
        help="from a dry run: jobs, GPU-hours, CPU-hours and disk per rule, and the total",
        description="Plan what a run of the study would still do, from `snakemake --dry-run` and each rule's resources.",
    )
    plan.add_argument("--configfile", default=None, help="study config (default: config/config.yaml)")
    plan.add_argument("--directory", default=".", help="the workflow's root folder (default: .)")
    plan.add_argument("--cores", type=int, default=2, help="cores a local run would use; caps threads per job (default 2)")
    plan.add_argument(
        "--calibrate",
        action="store_true",
        help="instead of planning, print the FLOP/s finished runs reached (config cluster.throughput) from --results",
    )
    plan.add_argument("--results", default="results", help="where --calibrate looks for finished runs (default: results)")
    plan.add_argument("--benchmarks", default="logs/benchmarks",
                      help="where --calibrate finds the rules' Snakemake benchmark files (default: logs/benchmarks)")
    plan.add_argument("--gpu-model", default=None, help="with --calibrate: name the cuda row after this GPU model (cluster.gpu_model)")
    plan.add_argument("snakemake_args", nargs="*", metavar="-- SNAKEMAKE_ARGS", help="passed to snakemake (after --)")
    plan.set_defaults(func=cmd_plan)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Returns the exit status of the chosen verb; bad inputs exit 2 with a message naming the culprit."""
    skip_final_collections()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except Exception as e:
        if not isinstance(e, NAMED_ERRORS):
            raise
        print(f"saeseeds {args.verb}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
