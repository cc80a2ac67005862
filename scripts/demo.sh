#!/usr/bin/env bash
# The runbook's loop on the local lab (`make demo`): seed, replay the workload as the baseline, advise,
# Redis + backend cache, converge every phase with its gates, nightly backups, then the before/after report.
# Each step is the command a user would type; the lab's connection variables come from .lab/env (mode 0600).
set -euo pipefail
BIN=${BIN:-.venv/bin}
SCALE=${SCALE:-M}
KPI_RUNS=${KPI_RUNS:-20}
LAB_DIR=${PGCONVERGE_LAB_DIR:-.lab}
OUT=${DEMO_OUT:-reports/lab/demo}
set -a; source "$LAB_DIR/env"; set +a
mkdir -p "$OUT"

step() { printf '\n=== %s\n' "$*"; }

step "validate phases.yml"
"$BIN/pgconverge" validate phases.yml

step "seed the reference data (scale $SCALE)"
"$BIN/pgconverge" lab seed --scale "$SCALE"

step "baseline: replay the declared workload (up to $KPI_RUNS timed calls per query, fewer — at least 3 — for one slower than 10 s in all) and snapshot it"
before=$("$BIN/pgconverge" snapshot --label before --kpi-runs "$KPI_RUNS" --redis-url-env CACHE_REDIS_URL \
         --reports "$OUT")
echo "$before"

step "advise: indexes for the replayed workload (pg_stat_statements + HypoPG, read-only)"
"$BIN/pgconverge" advise --top 20 --output "$OUT/advise.yml"
cat "$OUT/advise.yml"

step "Redis for the backend cache on @local, REDIS_URL and ENABLE_CACHE in .lab/backend.env"
"$BIN/pyinfra" inventory/lab.py deploys/redis.py -y

step "converge phases 1-3 with their gates (pre-change backups, snapshots around each phase)"
"$BIN/pyinfra" inventory/lab.py deploys/all.py -y

step "nightly backups on @local: script, cron entry, a first verified dump"
"$BIN/pyinfra" inventory/lab.py deploys/backups.py -y

step "after: the same workload, the same number of calls"
after=$("$BIN/pgconverge" snapshot --label after --kpi-runs "$KPI_RUNS" --redis-url-env CACHE_REDIS_URL \
        --reports "$OUT")
echo "$after"

step "before/after report (the runbook's Vorher/Nachher table and chart)"
"$BIN/pgconverge" report "$before" "$after" --output-dir "$OUT"

cat <<DONE

Done. Where each result is:
  baseline and after snapshots  $before
                                $after
  advise's proposal             $OUT/advise.yml
  before/after report + chart   $OUT/comparison.md, $OUT/comparison.png
  snapshots around each phase   ${PGCONVERGE_REPORTS_DIR:-reports}/lab/local/
  pre-change backups            ${PGCONVERGE_BACKUP_DIR:-backups}/lab/local/
  nightly backups               $(dirname "$LAB_DIR")/backups/nightly/lab/local/ (script $LAB_DIR/backup/pgconverge-backup-lab-local, cron 02:30)
  provisioned Redis             $LAB_DIR/cache/ (port $CACHE_REDIS_PORT), backend settings $LAB_DIR/backend.env
  connection URLs               $LAB_DIR/env (mode 0600)
Re-check any time:  set -a; source $LAB_DIR/env; set +a;
  $BIN/pyinfra inventory/lab.py deploys/verify.py -y     # drift + every gate, changes nothing
  $BIN/pyinfra inventory/lab.py deploys/all.py --dry     # the SQL a run would execute
DONE
