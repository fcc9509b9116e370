#!/usr/bin/env bash
# Make MEArec 1.11's bundled BBP cell models simulate under NEURON 9, for the mearec_tetrode benchmark case.
#
# Symptom: MEArec's template generation stops with
#   RuntimeError: hocobj_call error: hoc_execerror: hoc_Load_file biophysics.hoc
# Two causes, both fixed here in MEArec's cell-model folder (not in MEArec's code):
# 1. NEURON 9 compiles mechanisms as C++. ProbAMPANMDA_EMS.mod and ProbGABAAB_EMS.mod redeclare
#    `void* nrn_random_arg(int)` (NEURON declares `Rand* nrn_random_arg(int)`) and call `scop_random(1)`
#    (now without argument), so nrnivmodl fails and no libnrnmech.so is built. MEArec compiles only when
#    bbp/mods is missing and ignores a failed compile, so it never retries. Patched and recompiled.
# 2. Simulating the cells one after another (n_jobs=1, as the benchmark does) loads them all into one
#    NEURON process; cells of one e-type define hoc templates of the same name (e.g. bAC217_biophys) with
#    different contents, and NEURON refuses to redefine a template. Each cell's template is renamed
#    <etype>_biophys_<cell hash> in its biophysics.hoc and template.hoc (names only).
# Idempotent; originals are kept in $BACKUP. Usage:
#   python -c "import MEArec as mr; mr.get_default_config()"   # creates MEArec's config folder if missing
#   scripts/fix_mearec_neuron9.sh [path/to/cell_models/bbp]
set -euo pipefail
shopt -s nullglob
BBP="${1:-$HOME/.config/mearec/1.11.0/cell_models/bbp}"
BACKUP="${BACKUP:-$BBP/../bbp_originals}"
[ -d "$BBP" ] || { echo "no MEArec cell models at $BBP: run python -c 'import MEArec as mr; mr.get_default_config()'" >&2; exit 1; }

# 1. the mechanisms: gather every cell's .mod files into bbp/mods (as MEArec does), patch, compile
mkdir -p "$BBP/mods"
cp -n "$BBP"/*/mechanisms/*.mod "$BBP/mods/"
for f in "$BBP"/mods/Prob*.mod "$BBP"/*/mechanisms/Prob*.mod; do
  rel=${f#"$BBP"/}
  mkdir -p "$BACKUP/$(dirname "$rel")"
  [ -e "$BACKUP/$rel" ] || cp "$f" "$BACKUP/$rel"
  sed -i -e '/^double nrn_random_pick(void\* r);$/d' \
         -e '/^void\* nrn_random_arg(int argpos);$/d' \
         -e 's/scop_random(1)/scop_random()/' \
         -e 's/nrn_random_pick(_p_rng)/nrn_random_pick(static_cast<Rand\*>(_p_rng))/' "$f"
done
# nrnivmodl runs `make -j 4`; a shim keeps it to one job on a small shared machine (the last -j wins)
SHIM=$(mktemp -d)
printf '#!/bin/sh\nexec %s "$@" -j1\n' "$(command -v make)" > "$SHIM/make"
chmod +x "$SHIM/make"
(cd "$BBP/mods" && rm -rf x86_64 && PATH="$SHIM:$PATH" nice -n 19 nrnivmodl)
rm -rf "$SHIM"
ls -l "$BBP/mods/x86_64/libnrnmech.so"

# 2. one hoc template name per cell
for d in "$BBP"/*/; do
  d=${d%/}
  [ -f "$d/biophysics.hoc" ] || continue
  cell=$(basename "$d")
  old=$(awk '$1=="begintemplate"{print $2}' "$d/biophysics.hoc")
  hash=$(awk '$1=="begintemplate"{n=split($2,a,"_"); print a[n]}' "$d/template.hoc")
  case "$old" in *_biophys) ;; *) echo "$cell: $old (renamed before)"; continue;; esac
  mkdir -p "$BACKUP/$cell"
  cp -n "$d/biophysics.hoc" "$d/template.hoc" "$BACKUP/$cell/"
  sed -i -E "s/\b${old}\b/${old}_${hash}/g" "$d/biophysics.hoc" "$d/template.hoc"
  echo "$cell: $old -> ${old}_${hash}"
done
