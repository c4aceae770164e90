# Incremental runs on thin LVs (sync --incremental), for test/incremental-vm.test.ts: run as root
# inside the VM by run-vm.sh (guest: /dev/vda is a blank disk, cwd is the checkout, dist/ built).
# Facts: "R <scenario> <key> <value>" (newlines become "|").
# usage: incremental-scenarios.sh [SCENARIO...]   (default: all)
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
BD="node bin/blkdelta"
W=/tmp/bd && mkdir -p $W
ST=$W/state

. test/vm/lib.sh   # R q lv fill zero sha same tagged wait_written bd
bases() { tagged blkdelta-base; }
INC="sync --no-progress --json --incremental --state-dir $ST"
# 64 scattered 4 KiB writes (a fixed spread over the LV: one in each 4 MiB)
scatter() { for i in $(seq 0 63); do q dd if=/dev/urandom of=/dev/vg0/$1 bs=4k seek=$((i * 1024 + i * 7 % 1000)) count=1 oflag=direct conv=notrunc status=none; done; }
field() { node -e 'const s=JSON.parse(require("fs").readFileSync(0,"utf8")); const v=process.argv[1].split(".").reduce((o,k)=>o?.[k],s); console.log(typeof v==="object"?JSON.stringify(v):v)' "$1" < $W/$2.out; }

setup_thin() {   # $1 thin LV of 256 MiB filled with random data, $2 a zeroed plain LV of the same size
  q lvcreate -y -V 256M -T vg0/pool -n $1; fill $1 256
  lv $2 256M; zero $2 1
}

basic() {   # first run sets the base (full); 64 scattered writes; the incremental run reads a few MiB
  setup_thin b_src b_dst
  bd b_first $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R b_first same "$(same b_src b_dst)"; R b_first bases "$(bases)"
  R b_first kind "$(field incremental.kind b_first)"; R b_first reason "$(field incremental.reason b_first)"
  scatter b_src
  bd b_incr $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R b_incr same "$(same b_src b_dst)"; R b_incr bases "$(bases)"
  for k in incremental.kind incremental.base incremental.newBase incremental.changedBytes incremental.sampleBlocks incremental.sampleDiffering bytesReadSource bytesReadTarget blocksDiffering; do
    R b_incr $k "$(field $k b_incr)"
  done
  bd b_none $INC --snapshot vg0/b_src /dev/vg0/b_dst   # nothing changed: only the sample is read
  R b_none kind "$(field incremental.kind b_none)"; R b_none read "$(field bytesReadSource b_none) $(field bytesReadTarget b_none)"
  R b_none bases "$(bases)"; R b_none sources "$(tagged blkdelta-source)"
}

# kill -9 of the client when $2 (a command) first succeeds, then a rerun: converges, one base
kill_at() {
  local s=$1 cond=$2
  $BD $INC --bwlimit 2M --snapshot vg0/b_src /dev/vg0/b_dst > $W/$s.out 2> $W/$s.err &
  local pid=$! n=0
  local hit=no
  while :; do
    if eval "$cond"; then hit=yes; break; fi
    kill -0 $pid 2>/dev/null && [ $n -lt 1200 ] || break
    sleep 0.05; n=$((n + 1))
  done
  kill -KILL $pid; wait $pid; R $s rc $?; R $s hit $hit
  R $s bases_after_kill "$(bases)"
  bd ${s}_rerun $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R $s same "$(same b_src b_dst)"; R $s bases "$(bases)"; R $s sources "$(tagged blkdelta-source)"
  R $s kind "$(field incremental.kind ${s}_rerun)"; R $s reason "$(field incremental.reason ${s}_rerun)"
  R $s metasnap "$(dmsetup status vg0-pool-tpool | awk '{ print $7 }')"
}

kill9() {   # kill -9 before the metadata query, during the copy, before the rotation
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M seek=10 count=24 oflag=direct conv=notrunc status=none
  kill_at k_snap '[ "$(tagged blkdelta-source)" -ge 1 ]'
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M seek=40 count=24 oflag=direct conv=notrunc status=none
  kill_at k_copy 'grep -q "\"pending\":\[\[" $ST/vg0-b_src.base.json 2>/dev/null && sleep 3'
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M seek=70 count=4 oflag=direct conv=notrunc status=none
  kill_at k_rotate '[ "$(bases)" -ge 2 ]'   # the new base exists, the old one is not removed yet
}

behind() {   # a tenth of the target rewritten behind blkdelta's back: the sample notices, full compare repairs it
  scatter b_src
  q dd if=/dev/urandom of=/dev/vg0/b_dst bs=1M seek=100 count=26 oflag=direct conv=notrunc status=none
  bd behind $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R behind same "$(same b_src b_dst)"; R behind bases "$(bases)"
  R behind kind "$(field incremental.kind behind)"; R behind reason "$(field incremental.reason behind)"
  bd behind_next $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R behind next_kind "$(field incremental.kind behind_next)"
}

removed() {   # the base removed by hand: full compare, reason recorded, a new base
  q lvremove -y "vg0/$(lvs --noheadings -o lv_name,lv_tags vg0 | awk '/blkdelta-base/ { print $1 }')"
  scatter b_src
  bd removed $INC --snapshot vg0/b_src /dev/vg0/b_dst
  R removed same "$(same b_src b_dst)"; R removed bases "$(bases)"
  R removed kind "$(field incremental.kind removed)"; R removed reason "$(field incremental.reason removed)"
}

nonthin() {   # a plain LV source: a full compare through a COW snapshot, reason recorded, no base
  lv n_src 64M; fill n_src 64; lv n_dst 64M
  bd nonthin $INC --snapshot vg0/n_src /dev/vg0/n_dst
  R nonthin same "$(same n_src n_dst)"; R nonthin kind "$(field incremental.kind nonthin)"; R nonthin reason "$(field incremental.reason nonthin)"
  R nonthin bases "$(lvs --noheadings -o lv_tags vg0 | grep -c 'blkdelta-job:vg0-n_src')"
}

poolguard() {   # the base pins enough to put the pool over pool_max_fill: dropped, full compare with the reason
  q dd if=/dev/urandom of=/dev/vg0/b_src bs=1M count=200 oflag=direct conv=notrunc status=none
  R poolguard fill "$(lvs --noheadings -o data_percent vg0/pool | tr -d ' ')"
  bd poolguard $INC --pool-max-fill 60 --snapshot vg0/b_src /dev/vg0/b_dst
  R poolguard same "$(same b_src b_dst)"; R poolguard bases "$(bases)"
  R poolguard kind "$(field incremental.kind poolguard)"; R poolguard reason "$(field incremental.reason poolguard)"
  R poolguard removed "$(field incremental.removedBases poolguard)"
}

job() {   # a job with incremental = true: the record, status and check show the kind of run and why
  q lvcreate -y -V 32M -T vg0/pool -n j_src; fill j_src 32; lv j_dst 32M
  cat > $W/blkdelta.toml <<TOML
state_dir = "$W/jstate"
metrics_file = "$W/jstate/blkdelta.prom"
[jobs.thinjob]
source = "/dev/vg0/j_src"
target = "/dev/vg0/j_dst"
snapshot = true
incremental = true
full_compare_every = "7d"
TOML
  bd job_first run --config $W/blkdelta.toml thinjob
  scatter_small j_src
  bd job_incr run --config $W/blkdelta.toml thinjob
  R job same "$(same j_src j_dst)"; R job bases "$(lvs --noheadings -o lv_tags vg0 | grep blkdelta-base | grep -c 'blkdelta-job:thinjob')"
  bd job_status status --config $W/blkdelta.toml --json thinjob
  bd job_check check --config $W/blkdelta.toml thinjob
  R job text_status "$($BD status --config $W/blkdelta.toml thinjob 2>&1)"
  R job metrics "$(grep -h '^blkdelta_[a-z_]*\(incremental\|read_\)' $W/jstate/blkdelta.prom)"
}
tsnap() {   # a push with --target-snapshot and --incremental: the server snapshots the target before
            # writing, the source is incremental; a target rewritten behind blkdelta's back: the
            # sample ends the first session before any write, the full compare repairs it
            # (the VM has no sshd: --rsh runs `blkdelta server --config FILE` here)
  q lvcreate -y --type thin-pool -L 160M -n ipool vg0; q lvcreate -y --type thin-pool -L 200M -n tpool vg0
  q lvcreate -y -V 64M -T vg0/ipool -n ts_src; fill ts_src 64
  q lvcreate -y -V 64M -T vg0/tpool -n ts_dst; zero ts_dst 1
  printf '[server]\nallow = ["/dev/vg0/ts_dst"]\n[server.target_snapshot]\nkeep_last = 3\n' > $W/ts.toml
  local push=(sync --no-progress --json --incremental --state-dir $W/tstate --job tsjob --target-snapshot --snapshot vg0/ts_src
    --rsh "sh -c 'shift 2; exec sh -c \"\$1 --config $W/ts.toml\"' rsh" --remote-cmd "$BD" localhost:/dev/vg0/ts_dst)
  bd ts_first "${push[@]}"
  R ts_first same "$(same ts_src ts_dst)"; R ts_first kind "$(field incremental.kind ts_first)"
  local before; before=$(sha ts_dst)
  scatter_small ts_src
  bd ts_incr "${push[@]}"
  R ts_incr same "$(same ts_src ts_dst)"; R ts_incr kind "$(field incremental.kind ts_incr)"; R ts_incr read "$(field bytesReadTarget ts_incr)"
  R ts_incr copies "$(tagged blkdelta-target)"; R ts_incr pending "$(tagged blkdelta-pending)"
  local newest; newest=$(lvs --noheadings -O -lv_time -o lv_name,lv_tags vg0 | awk '/blkdelta-target/ { print $1; exit }')
  if [ -n "$newest" ]; then
    q lvchange -ay -K vg0/$newest; R ts_incr copy_is_before "$([ "$(sha $newest)" = "$before" ] && echo yes || echo no)"; q lvchange -an vg0/$newest
  fi
  scatter_small ts_src
  q dd if=/dev/urandom of=/dev/vg0/ts_dst bs=1M seek=20 count=7 oflag=direct conv=notrunc status=none
  bd ts_behind "${push[@]}"
  R ts_behind same "$(same ts_src ts_dst)"; R ts_behind kind "$(field incremental.kind ts_behind)"; R ts_behind reason "$(field incremental.reason ts_behind)"
  R ts_behind copies "$(tagged blkdelta-target)"; R ts_behind pending "$(tagged blkdelta-pending)"
  R ts_behind bases "$(lvs --noheadings -o lv_tags vg0 | grep blkdelta-base | grep -c 'blkdelta-job:tsjob')"
}
scatter_small() { for i in $(seq 0 7); do q dd if=/dev/urandom of=/dev/vg0/$1 bs=4k seek=$((i * 1000)) count=1 oflag=direct conv=notrunc status=none; done; }

q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
q lvcreate -y --type thin-pool -L 640M -n pool vg0
for s in ${@:-basic kill9 behind removed nonthin poolguard job tsnap}; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  $s
  R $s seconds "$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')"
done
