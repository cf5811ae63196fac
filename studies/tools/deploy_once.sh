# Sourced by the deployment drivers (studies/deploy/run_mt.sh, studies/semparse_holdout/deploy.sh), from the
# repository root: one deploy.py run into DEST unless it has finished there (resumable: an unfinished DEST
# resumes exactly, deploy.py's own contract).
deploy_once() { # dest label deploy.py-flags...
    local dest=$1 label=$2; shift 2
    [ -f "$dest/summary.json" ] && { echo "skip $label"; return; }
    echo "$(date +%T) deploy $label"
    python deploy.py "$@" --out "$dest"
}
