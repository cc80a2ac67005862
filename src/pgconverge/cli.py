"""`pgconverge`: the read-only and auxiliary commands. pyinfra stays the command that changes environments."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import psycopg

from . import lab as lab_module
from . import spec as spec_module
from .connection import open_connection, open_session, server_reason
from .errors import UserError
from .kinds import REGISTRY
from .lab import seed as seed_module
from .secrets import mask, remember_url

EXIT_INPUT = 2


def _lab_dir() -> Path:
    return Path(os.environ.get("PGCONVERGE_LAB_DIR", ".lab"))


def _inventory_url(inventory: str, wanted: str | None) -> str:
    """The database URL of one database host of a pyinfra inventory (from the variable its data names)."""
    from .report import database_hosts
    from .secrets import url_from_env

    hosts = dict(database_hosts(Path(inventory)))
    if not hosts:
        raise UserError(f"{inventory}: no host names a database_url_env — nothing to connect to")
    if wanted is None and len(hosts) > 1:
        raise UserError(f"{inventory} has {len(hosts)} database hosts ({', '.join(hosts)}) — pick one with --host")
    name = wanted or next(iter(hosts))
    if name not in hosts:
        raise UserError(f"{inventory}: no database host {name!r} — there are {', '.join(hosts)}")
    return url_from_env(hosts[name]["database_url_env"], f"host {name}")


def _database_url(args: argparse.Namespace) -> str:
    """--database-url, else --inventory's host, else $DATABASE_URL, else the lab's database; remembered so that
    it is masked."""
    inventory = getattr(args, "inventory_file", None)
    url = args.database_url or (_inventory_url(inventory, args.db_host) if inventory else None) or os.environ.get(
        "DATABASE_URL")
    if not url:
        lab = lab_module.Lab(_lab_dir())
        if not lab.state_file.exists():
            raise UserError("no --database-url, no DATABASE_URL and no lab here — pass one, or run pgconverge lab up")
        url = lab.urls()["DATABASE_URL"]
    remember_url(url)
    return str(url)


def cmd_validate(args: argparse.Namespace) -> int:
    spec = _load_spec(args, announce=False)
    counts = {(kind.name if n == 1 else kind.section).replace("_", " "): n for kind in REGISTRY
              if (n := sum(len(kind.declared(p)) for p in spec.phases))}
    counts["gates"] = sum(len(p.gates) for p in spec.phases)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    print(f"{spec.path}: valid — {len(spec.phases)} phases, {summary}")
    for phase in spec.phases:
        for kind in REGISTRY:
            for note in kind.notes(kind.declared(phase), None):
                print(f"note: phase {phase.id}: {note}")
    return 0


def cmd_lab(args: argparse.Namespace) -> int:
    lab = lab_module.Lab(_lab_dir())
    if args.action == "up":
        urls = lab.up()
        for key in ("DATABASE_URL", "REDIS_URL"):
            print(f"{key}={mask(urls[key])}")
        print(f"full values (mode 0600): {lab.env_file}")
    elif args.action == "down":
        lab.down()
        print("lab stopped")
    elif args.action == "status":
        status = lab.status()
        for server, running in status.items():
            print(f"{server:<9} {'running' if running else 'stopped'}")
        return 0 if all(status.values()) else 1
    elif args.action == "seed":
        seed_module.seed(_database_url(args), args.scale, args.seed)
    return 0


def cmd_kpi(args: argparse.Namespace) -> int:
    """p50/p95/p99 of each query the workload declares, on a database (read-only)."""
    from . import gates
    from .snapshot import present

    url = _database_url(args)
    spec = _load_spec(args)
    if not spec.workload:
        raise UserError(f"{spec.path} declares no workload: — add the application's queries there")
    with open_connection(url, "pgconverge-kpi") as conn:
        params = gates.ParamSampler(conn, spec)
        print(f"{'query':<30} {'p50 ms':>9} {'p95 ms':>9} {'p99 ms':>9}  runs")
        for query in spec.workload:
            if query.needs and not present(conn, query.needs):
                print(f"{query.name:<30} {'—':>9} {'—':>9} {'—':>9}  (needs {query.needs}, not there yet)")
                continue
            samples = gates.time_query(conn, query, params, args.runs)
            print(f"{query.name:<30} {gates.percentile(samples, 50):>9.2f} {gates.percentile(samples, 95):>9.2f}"
                  f" {gates.percentile(samples, 99):>9.2f}  {len(samples)}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from . import backup
    from .clienttools import NoMatchingClient

    url = _database_url(args)
    directory = backup.host_directory(Path(args.backup_dir), args.environment, args.host)
    # pg_dump through a transaction pooler changes other clients' sessions; a dump may read a standby
    open_session(url, "pgconverge-check", "the database", writes=False).close()
    try:
        if args.action == "take":
            record = backup.take_backup(url, directory, args.environment, "manual", args.retention, host=args.host,
                                        mode=args.mode)
            print(f"{record.path} ({record.mode}, {record.size:,} bytes, {record.entries} entries,"
                  f" sha256 {record.sha256}, {record.tool})")
            return 0
        scratch = args.scratch_url or os.environ.get(args.scratch_url_env or "") or None
        return 0 if backup.restore_drill(url, directory, scratch_url=scratch) else 1
    except (backup.BackupFailed, NoMatchingClient) as exc:
        print(f"pgconverge backup: {exc}", file=sys.stderr)
        return 1


def cmd_plan(args: argparse.Namespace) -> int:
    from . import report

    spec = _load_spec(args)
    data = dict(item.partition("=")[::2] for item in args.data or [])
    unknown = sorted(set(data) - {"phase"})
    if unknown:
        raise UserError(f"plan --data {unknown[0]}=…: only phase=ID is read here (as deploys/phase.py and"
                        " deploys/rollback.py take it)")
    plans = report.build(spec, Path(args.inventory), args.deploy, args.phase or data.get("phase"), args.limit)
    text = report.to_json(plans, args.deploy) if args.format == "json" else report.to_markdown(plans, args.deploy)
    if args.output:
        Path(args.output).write_text(text + "\n")
    else:
        print(text)
    return 1 if any(p.error for p in plans) else 0


def cmd_advise(args: argparse.Namespace) -> int:
    """Read-only: an index proposal from the real workload, as a phases.yml fragment."""
    from . import advise

    # a phases.yml, when there is one, gives the workload's SQL with its constants (partial-index predicates)
    spec = _load_spec(args) if args.phases or Path(spec_module.locate()[0]).exists() else None
    if args.group:
        from .report import group_hosts
        from .secrets import url_from_env

        if not args.inventory_file:
            raise UserError("--group needs --inventory: the inventory that defines the group")
        advices = {}
        for name, data in group_hosts(Path(args.inventory_file), args.group):
            url = url_from_env(data["database_url_env"], f"host {name}")
            remember_url(url)
            with open_connection(url, "pgconverge-advise", f"host {name}") as conn:
                advices[name] = advise.advise(conn, spec, args.min_calls, args.min_mean_ms, args.top,
                                              write_window_s=args.write_window)
        advice = advise.fleet_advice(advices)
    else:
        url = _database_url(args)
        with open_connection(url, "pgconverge-advise") as conn:
            advice = advise.advise(conn, spec, args.min_calls, args.min_mean_ms, args.top,
                                   write_window_s=args.write_window)
    if args.output_dir:
        try:
            path = advise.write_proposal(advice, Path(args.output_dir))
        except advise.NothingToAdvise as exc:
            print(exc)
            return 0
        print(f"{path}: {len(advice.chosen)} indexes, {len(advice.workload)} workload queries with gates,"
              f" for {len(advice.statements)} statements — pgconverge validate {path}")
        return 0
    text = advise.to_yaml(advice)
    if args.output:
        Path(args.output).write_text(text)
        print(f"{args.output}: {len(advice.chosen)} indexes for {len(advice.statements)} statements")
    else:
        print(text, end="")
    return 0


def cmd_export_sql(args: argparse.Namespace) -> int:
    from . import report

    spec = _load_spec(args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report.every_statement(spec))
    print(f"{output}: every statement pgconverge can generate for {spec.path}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .lab import bench

    spec = _load_spec(args)
    out_dir = Path(args.output) / args.scale
    if args.fleet:
        sizes = tuple(int(n) for n in args.fleet.split(","))
        fleet_figures = bench.fleet_noop(Path(spec.path), Path.cwd(), Path(args.output) / "fleet", sizes)
        print(bench.fleet_markdown(fleet_figures))
        print(f"written: {args.output}/fleet/fleet.json")
        return 0
    if args.build_priority:
        from .lab import bench_gates

        figures = bench_gates.build_priority_at_scale(Path.cwd(), Path(args.output) / "priority", args.scale)
        print(bench_gates.priority_markdown(figures))
        print(f"written: {args.output}/priority/priority.json")
        return 0
    if args.gates:
        from .lab import bench_gates

        report = bench_gates.gates_under_load(Path.cwd(), Path(args.app or "tests/lending"),
                                              Path(args.output) / "gates", converges=args.converges,
                                              boxoffice_rows=args.rows)
        print(bench_gates.gates_markdown(report))
        print(f"written: {args.output}/gates/gates.json, gates.md")
        return 0
    if args.peer:
        figures = bench.peer_noop(Path.cwd(), Path(args.output) / "peer")
        (Path(args.output) / "peer").mkdir(parents=True, exist_ok=True)
        (Path(args.output) / "peer" / "peer.json").write_text(json.dumps(figures, indent=2))
        print(f"no-op converge of 5 indexes + 1 extension, median of {figures['runs']}: pgconverge"
              f" {figures['pgconverge_median_s']} s, Ansible {figures.get('ansible_median_s', figures.get('ansible'))}"
              + (f" s — {figures['ratio']}× faster" if "ratio" in figures else ""))
        print(f"written: {args.output}/peer/peer.json")
        return 0
    if args.catalog:
        figures = bench.catalog_noop(Path(spec.path), Path.cwd(), Path(args.output) / "catalog", args.tables)
        print(bench.catalog_markdown(figures))
        print(f"written: {args.output}/catalog/catalog.json")
        return 0
    if args.advise and args.app:
        app = Path(args.app)
        if not (app / "phases.yml").is_file() or not (app / "sql" / "schema").is_dir():
            raise UserError(f"--app {app}: no phases.yml and sql/schema/ there — point it at a test application's"
                            " folder (e.g. tests/boxoffice)")
        app_report = bench.app_advise_comparison(app, args.rows, args.runs, Path(args.output) / app.name, Path.cwd())
        print(bench.app_advise_markdown(app_report))
        print(f"written: {args.output}/{app.name}/advise.json, advise.md")
        return 0
    if args.advise:
        compared = bench.advise_comparison(spec, args.scale, args.runs, out_dir, Path.cwd())
        print(bench.advise_markdown(compared))
        print(f"written: {out_dir}/advise.json, advise.md")
        return 0
    report = bench.run(spec, args.scale, args.runs, out_dir, Path.cwd())
    print(bench.to_markdown(report))
    print(f"written: {out_dir}/bench.json, bench.md, bench.png")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    from . import snapshot

    if args.inventory_file and not args.db_host:
        from .report import database_hosts

        hosts = [name for name, _ in database_hosts(Path(args.inventory_file))]
        args.db_host = hosts[0] if len(hosts) == 1 else None
    url = _database_url(args)
    redis_url = os.environ.get(args.redis_url_env)
    if redis_url:
        remember_url(redis_url)
    spec = _load_spec(args) if args.kpi_runs else None
    if spec is not None and not spec.workload:
        print(f"note: {spec.path} declares no workload: — the snapshot has no query timings", file=sys.stderr)
    with open_connection(url, "pgconverge-snapshot") as conn:
        taken = snapshot.take(conn, redis_url, spec, args.kpi_runs)
    path = snapshot.write(taken, Path(args.reports), args.environment, args.db_host or "local", args.label)
    print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from . import snapshot

    a, b = (_snapshot_file(Path(p)) for p in (args.before, args.after))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(snapshot.compare(a, b))
    snapshot.chart(a, b, out / "comparison.png")
    print(snapshot.compare(a, b))
    print(f"written: {out}/comparison.md, {out}/comparison.png")
    return 0


def _snapshot_file(path: Path) -> dict:
    """A snapshot written by `pgconverge snapshot` or a deploy, or one line saying what the file is not."""
    import json

    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}: not JSON ({exc.msg}, line {exc.lineno}) — pass two files written by"
                         " pgconverge snapshot") from None
    if not isinstance(document, dict) or not {"taken_at", "tables", "cache_hit_percent"} <= document.keys():
        raise UserError(f"{path}: not a pgconverge snapshot — pass two files written by pgconverge snapshot")
    return document


def _add_phases(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--phases", help="the phases.yml to use (default: $PGCONVERGE_PHASES, else ./phases.yml)")


def _load_spec(args: argparse.Namespace, announce: bool = True) -> spec_module.Spec:
    """The one rule for which phases.yml (--phases > $PGCONVERGE_PHASES > ./phases.yml), named on the first line
    (an error names it too)."""
    path, why = spec_module.locate(getattr(args, "file", None) or args.phases)
    loaded = spec_module.load(path)
    if announce:
        print(f"phases: {path} ({why})", file=sys.stderr, flush=True)
    return loaded


def _add_database_url(parser: argparse.ArgumentParser, inventory: bool = False) -> None:
    parser.add_argument("--database-url", help="default: $DATABASE_URL, else the lab's database")
    if inventory:
        parser.add_argument("--inventory", dest="inventory_file",
                            help="a pyinfra inventory: connect to its database host (URL from the variable it names)")
        parser.add_argument("--host", dest="db_host", help="with --inventory: which database host (default: the only one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pgconverge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check phases.yml against its schema and semantic rules")
    validate.add_argument("file", nargs="?", help="default: --phases, else $PGCONVERGE_PHASES, else ./phases.yml")
    _add_phases(validate)
    validate.set_defaults(func=cmd_validate)

    lab = commands.add_parser("lab", help="the local lab: PostgreSQL (Debian's 15 or PGCONVERGE_PG_BIN's) + pg_cron + Redis")
    lab.add_argument("action", choices=["up", "down", "status", "seed"])
    lab.add_argument("--scale", choices=sorted(seed_module.SCALES), default="S")
    lab.add_argument("--seed", type=int, default=42)
    _add_database_url(lab)
    lab.set_defaults(func=cmd_lab)

    backup = commands.add_parser("backup", help="take a verified backup, or run the restore drill")
    backup.add_argument("action", choices=["take", "restore-drill"])
    _add_database_url(backup)
    backup.add_argument("--backup-dir", default="backups")
    backup.add_argument("--environment", default="lab")
    backup.add_argument("--retention", type=int, default=5)
    backup.add_argument("--host", default="cli", help="the inventory host the backups belong to (default: cli)")
    backup.add_argument("--mode", choices=["full", "schema"], default="full",
                        help="take: with table data (default) or schema only")
    backup.add_argument("--scratch-url", help="restore-drill: a server where the drill may create its scratch database"
                        " (default: the database's own server; needs CREATEDB there)")
    backup.add_argument("--scratch-url-env", help="restore-drill: the variable holding --scratch-url (keeps it out of ps)")
    backup.set_defaults(func=cmd_backup)

    plan = commands.add_parser("plan", help="what a deploy would change on each database, as Markdown or JSON")
    plan.add_argument("inventory", help="e.g. inventory/staging.py")
    plan.add_argument("deploy", help="e.g. deploys/all.py")
    _add_phases(plan)
    plan.add_argument("--phase", help="for deploys/rollback.py: the first phase to undo; for deploys/phase.py: the phase")
    plan.add_argument("--data", action="append", metavar="phase=ID", help="as pyinfra takes it: --data phase=ID")
    plan.add_argument("--limit", action="append", metavar="HOST",
                      help="only these database hosts (names or globs, as pyinfra's --limit), repeatable")
    plan.add_argument("--format", choices=["md", "json"], default="md")
    plan.add_argument("--output", help="write to this file instead of standard output")
    plan.set_defaults(func=cmd_plan)

    adv = commands.add_parser("advise", help="index proposal from pg_stat_statements + HypoPG (read-only)")
    _add_database_url(adv, inventory=True)
    adv.add_argument("--min-calls", type=int, default=5)
    adv.add_argument("--min-mean-ms", type=float, default=0.0)
    adv.add_argument("--top", type=int, default=20, help="statements by total time")
    adv.add_argument("--write-window", type=float, default=3.0, metavar="SECONDS",
                     help="watch the tables' writes this long (0: average since the statistics reset)")
    adv.add_argument("--group", help="with --inventory: one proposal for every database host of this inventory group"
                                     " (same schema), weighted by each database's own workload")
    adv.add_argument("--output", help="write the workload: and phases: sections here")
    adv.add_argument("--output-dir", help="write a phases.yml that validates on its own, with its sql/ beside it")
    _add_phases(adv)
    adv.set_defaults(func=cmd_advise)

    export = commands.add_parser("export-sql", help="write every statement the planner can generate (for squawk)")
    _add_phases(export)
    export.add_argument("--output", default="build/lint/generated.sql")
    export.set_defaults(func=cmd_export_sql)

    bench = commands.add_parser("bench", help="KPI p50/p95/p99 before and after each phase on a lab of its own")
    bench.add_argument("--scale", choices=sorted(seed_module.SCALES), default="L")
    bench.add_argument("--runs", type=int, default=200, help="runs per KPI class (fewer when a query is slow)")
    _add_phases(bench)
    bench.add_argument("--output", default="reports/bench")
    bench.add_argument("--advise", action="store_true",
                       help="instead: phase 1 removed, workload replayed, advise's indexes vs the shipped ones")
    bench.add_argument("--app", metavar="DIR",
                       help="with --advise: a test application's folder (phases.yml, sql/schema/) instead of SalesFlow")
    bench.add_argument("--peer", action="store_true",
                       help="no-op converge of 5 indexes + 1 extension: pgconverge vs Ansible's community.postgresql")
    bench.add_argument("--rows", type=int, default=1_200_000, help="with --app: rows of its main table")
    bench.add_argument("--fleet", metavar="N,N,…",
                       help="converge and no-op times of fleets of N databases (e.g. 1,20,100) and their ratio to one")
    bench.add_argument("--catalog", action="store_true",
                       help="instead: no-op converge time on a database with --tables other tables (scale S)")
    bench.add_argument("--tables", type=int, default=3000)
    bench.add_argument("--gates", action="store_true",
                       help="gates under load: the lending app converged again and again beside two CPU-bound"
                            " processes and a writing client (a correct phase never reverted, a regression always)")
    bench.add_argument("--converges", type=int, default=10, help="with --gates: converges per series")
    bench.add_argument("--build-priority", action="store_true",
                       help="phase 1's builds at --scale with the application writing: write p99 idle, at normal and"
                            " at low build priority")
    bench.set_defaults(func=cmd_bench)

    snap = commands.add_parser("snapshot", help="read-only health snapshot as JSON under reports/<env>/<host>/")
    _add_database_url(snap)
    snap.add_argument("--inventory", dest="inventory_file",
                      help="a pyinfra inventory: snapshot its database host (--host picks one when there are several)")
    snap.add_argument("--label", default="manual")
    snap.add_argument("--environment", default="lab")
    snap.add_argument("--host", dest="db_host", help="the host the snapshot belongs to (with --inventory: which one)")
    snap.add_argument("--reports", default="reports")
    snap.add_argument("--kpi-runs", type=int, default=0,
                      help="also time every declared workload query this many times, fewer (at least 3) when that takes over"
                           " 10 s (p50/p95/p99 in the snapshot)")
    snap.add_argument("--redis-url-env", default="REDIS_URL", help="the variable holding the Redis URL to read")
    _add_phases(snap)
    snap.set_defaults(func=cmd_snapshot)

    rep = commands.add_parser("report", help="compare two snapshots: Markdown and a PNG chart")
    rep.add_argument("before")
    rep.add_argument("after")
    rep.add_argument("--output-dir", default="reports/comparison")
    rep.set_defaults(func=cmd_report)

    kpi = commands.add_parser("kpi", help="p50/p95 of every KPI query class on a database (read-only)")
    _add_database_url(kpi, inventory=True)
    kpi.add_argument("--runs", type=int, default=50)
    _add_phases(kpi)
    kpi.set_defaults(func=cmd_kpi)

    fleet = commands.add_parser("fleet", help="a fleet in waves: canary first, shards for CI jobs, one report")
    fleet_commands = fleet.add_subparsers(dest="action", required=True)
    for name, what in (("waves", "every database host and its wave"),
                       ("shard", "the --limit arguments of one CI job's share of a wave"),
                       ("rollout", "converge wave after wave with pyinfra; stop when a wave fails too much"),
                       ("report", "merge the hosts' JSON summaries into one Markdown page")):
        sub = fleet_commands.add_parser(name, help=what)
        if name != "report":
            sub.add_argument("--inventory", required=True, help="the pyinfra inventory of the fleet")
            sub.add_argument("--waves", default="1,100",
                             help="cumulative percentages for hosts without rollout_wave (default: 1 canary, then all)")
        if name == "shard":
            sub.add_argument("--wave", type=int, required=True)
            sub.add_argument("--shards", type=int, required=True)
            sub.add_argument("--index", type=int, required=True)
        if name == "rollout":
            sub.add_argument("deploy", help="e.g. deploys/all.py")
            sub.add_argument("--summary-dir", default="reports/fleet", help="where each host writes its JSON summary")
            sub.add_argument("--max-fail-percentage", type=float, default=0.0)
            sub.add_argument("--output", help="write the Markdown report here too")
        if name == "report":
            sub.add_argument("folders", nargs="+", help="folders holding the hosts' JSON summaries (searched deeply)")
            sub.add_argument("--inventory", help="list the hosts that did not run too, with their waves")
            sub.add_argument("--waves", default="1,100")
            sub.add_argument("--output", help="write the Markdown here (e.g. $GITHUB_STEP_SUMMARY)")
            sub.add_argument("--wave", type=int, help="judge only this wave: exit 1 when more than"
                             " --max-fail-percentage of its hosts failed or did not report (the gate between waves)")
            sub.add_argument("--max-fail-percentage", type=float, default=0.0)
    fleet.set_defaults(func=cmd_fleet)
    return parser


def cmd_fleet(args: argparse.Namespace) -> int:
    from . import fleet

    try:
        percentages = tuple(float(p) for p in args.waves.split(","))
    except ValueError:
        raise UserError(f"--waves {args.waves}: give cumulative percentages, e.g. 1,25,100") from None
    members = fleet.waves(Path(args.inventory), percentages) if args.inventory else []
    if args.action == "waves":
        for member in members:
            print(f"{member.wave}\t{member.host}")
        return 0
    if args.action == "shard":
        print(" ".join(f"--limit {host}" for host in fleet.shard(members, args.wave, args.shards, args.index)))
        return 0
    if args.action == "rollout":
        passed, text = fleet.rollout(Path(args.inventory), args.deploy, Path(args.summary_dir),
                                     args.max_fail_percentage, percentages,
                                     log=lambda line: print(line, file=sys.stderr))
    else:
        summaries = fleet.read_summaries([Path(f) for f in args.folders])
        if not members:
            members = [fleet.Member(h, s["wave"] if isinstance(s.get("wave"), int) else 0)
                       for h, s in sorted(summaries.items())]
        judged = [m for m in members if args.wave is None or m.wave == args.wave]
        bad = [m.host for m in judged if fleet.failed(summaries.get(m.host))]
        share = 100.0 * len(bad) / len(judged) if judged else 100.0
        passed = share <= args.max_fail_percentage if args.wave is not None else not bad
        verdict = None if passed else (f"wave {args.wave}: {len(bad)} of {len(judged)} failed or did not report"
                                       f" ({share:.0f} %), more than max_fail_percentage {args.max_fail_percentage:g} %"
                                       if args.wave is not None else f"{len(bad)} databases failed or did not run")
        text = fleet.to_markdown(members, summaries, stopped=verdict)
    if args.output:
        with open(args.output, "a") as out:  # $GITHUB_STEP_SUMMARY is appended to
            out.write(text)
    print(text, end="")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except spec_module.SpecError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INPUT
    except (UserError, OSError) as exc:  # a LabError and a BackupFailed are UserErrors
        print(f"pgconverge: {mask(str(exc))}", file=sys.stderr)
        return 1
    except psycopg.Error as exc:  # the database refused a read: its reason, not a traceback
        print(f"pgconverge: the database refused: {server_reason(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
