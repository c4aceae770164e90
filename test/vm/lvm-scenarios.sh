# LVM scenarios for test/lvm-vm.test.ts, run as root inside the VM by run-vm.sh (guest: /dev/vda
# is a blank disk, cwd is the checkout, dist/ is built). Each scenario uses its own LVs in vg0 and
# prints facts as "R <scenario> <key> <value>" (newlines in values become "|"); the ava test on the
# host asserts on them. Only the blkdelta CLI and shell run here (JS is ~17x slower in the VM).
# usage: lvm-scenarios.sh [SCENARIO...]   (default: all)
set -u
export LVM_SUPPRESS_FD_WARNINGS=1
BD="node bin/blkdelta"
W=/tmp/bd && mkdir -p $W

. test/vm/lib.sh   # R q lv fill zero digest same tagged wait_written bd
# Runs that must still be going when the test acts on them (a write into the source, the fill
# poller's 1 s tick, a signal) are slowed with --bwlimit: a fast sync could finish first.

overflow() {   # a 4M COW snapshot overflows while the sync reads it: SNAPSHOT_OVERFLOW, none left
  lv o_src 16M; fill o_src 16; lv o_dst 16M; zero o_dst 1
  $BD sync --no-progress --bwlimit 2M --snapshot vg0/o_src --snapshot-size 4M /dev/vg0/o_dst > $W/overflow.out 2> $W/overflow.err &
  local pid=$!
  wait_written o_dst
  dd if=/dev/urandom of=/dev/vg0/o_src bs=1M count=8 oflag=direct status=none
  R overflow attr_during "$(lvs --noheadings -o lv_attr,lv_tags vg0 | grep blkdelta-source)"
  wait $pid; R overflow rc $?; R overflow err "$(cat $W/overflow.err)"; R overflow left "$(tagged blkdelta-source)"
}

maxfill() {   # --snapshot-max-fill: the poller stops the run before the snapshot overflows
              # (its ticks read `dmsetup status`: counted from the debug log; $1 = scenario name)
  local s=${1:-maxfill}
  lv m_src 16M; fill m_src 16; lv m_dst 16M; zero m_dst 1
  BLKDELTA_DEBUG=1 $BD sync --no-progress --bwlimit 1M --snapshot vg0/m_src --snapshot-size 8M --snapshot-max-fill 5 /dev/vg0/m_dst > $W/$s.out 2> $W/$s.err &
  local pid=$!
  wait_written m_dst
  dd if=/dev/urandom of=/dev/vg0/m_src bs=1M count=2 oflag=direct status=none
  R $s attr_during "$(lvs --noheadings -o lv_attr,snap_percent,lv_tags vg0 | grep blkdelta-source)"
  wait $pid; R $s rc $?; R $s err "$(grep -v 'debug: ' $W/$s.err)"; R $s left "$(tagged blkdelta-source)"
  R $s dm_polls "$(grep -c 'debug: running dmsetup status --noflush vg0-m_src--blkdelta--' $W/$s.err)"
  R $s lvs_runs "$(grep -c 'debug: running lvs' $W/$s.err)"
  lvremove -y vg0/m_src vg0/m_dst >/dev/null 2>&1
}

maxfill_nodm() {   # the same with a dmsetup whose `status` fails: every tick falls back to lvs, same abort
  mkdir -p $W/nodm
  printf '#!/bin/sh\n[ "$1" = status ] && { echo "dmsetup: broken for the test" >&2; exit 1; }\nexec /usr/sbin/dmsetup "$@"\n' > $W/nodm/dmsetup
  chmod +x $W/nodm/dmsetup
  PATH=$W/nodm:$PATH maxfill maxfill_nodm
}

sigterm() {   # SIGTERM mid-sync: cleanup runs (no source snapshot left); the target snapshot stays pending
  lv t_src 16M; fill t_src 16; lv t_dst 16M; zero t_dst 1
  $BD sync --no-progress --bwlimit 1M --snapshot vg0/t_src --snapshot-size 8M --target-snapshot --target-snapshot-size 20M /dev/vg0/t_dst \
    > $W/sigterm.out 2> $W/sigterm.err &
  local pid=$!
  wait_written t_dst; kill -TERM $pid
  wait $pid; R sigterm rc $?; R sigterm err "$(cat $W/sigterm.err)"
  R sigterm left "$(tagged blkdelta-source)"; R sigterm pending "$(tagged blkdelta-pending)"
  # the next run: the target is torn, the pending snapshot is still the last good copy: no new one
  bd sigterm2 sync --no-progress --snapshot vg0/t_src --snapshot-size 8M --target-snapshot --target-snapshot-size 20M /dev/vg0/t_dst
  R sigterm same_after_rerun "$(same t_src t_dst)"
  R sigterm target_snaps "$(lvs --noheadings -o lv_name,lv_tags vg0 | grep -c '^ *t_dst-blkdelta-tgt-.*blkdelta-target')"
  R sigterm pending_after_rerun "$(tagged blkdelta-pending)"
}

sigkill() {   # SIGKILL mid-sync leaves the snapshot; the next run removes it, says so, and syncs
  lv k_src 16M; fill k_src 16; lv k_dst 16M; zero k_dst 1
  $BD sync --no-progress --bwlimit 1M --snapshot vg0/k_src --snapshot-size 8M /dev/vg0/k_dst > /dev/null 2>&1 &
  local pid=$!
  wait_written k_dst; kill -KILL $pid; wait $pid 2>/dev/null
  sleep 1   # the server child exits on stdin EOF
  R sigkill left_after_kill "$(tagged blkdelta-source)"
  bd sigkill sync --no-progress --json --snapshot vg0/k_src --snapshot-size 8M /dev/vg0/k_dst
  R sigkill same "$(same k_src k_dst)"; R sigkill left "$(tagged blkdelta-source)"
}

pool() { lvs vg0/pool >/dev/null 2>&1 || q lvcreate -y --type thin-pool -L 128M -n pool vg0; }

thin() {   # thin origin (thin snapshot, no size) to a thin target with --target-snapshot --keep 1,
           # twice; then roll the target back to the first run's copy with lvconvert --merge
  pool
  q lvcreate -y -V 8M -T vg0/pool -n th_src; fill th_src 8
  q lvcreate -y -V 8M -T vg0/pool -n tg_dst
  bd thin1 sync --no-progress --json --snapshot vg0/th_src --target-snapshot --keep 1 /dev/vg0/tg_dst
  R thin same_after_1 "$(same th_src tg_dst)"
  local a; a=$(digest tg_dst)
  fill th_src 8
  bd thin2 sync --no-progress --json --snapshot vg0/th_src --target-snapshot --keep 1 /dev/vg0/tg_dst
  R thin same_after_2 "$(same th_src tg_dst)"; R thin left "$(tagged blkdelta-source)"
  R thin kept "$(lvs --noheadings -o lv_name,lv_tags vg0 | grep blkdelta-target | grep -c tg_dst)"
  R thin pending "$(lvs --noheadings -o lv_name,lv_tags vg0 | grep tg_dst-blkdelta | grep -c blkdelta-pending)"
  local snap; snap=$(lvs --noheadings -o lv_name,lv_tags vg0 | awk '/blkdelta-target/ && $1 ~ /^tg_dst-/ { print $1; exit }')
  R thin snap "$snap"
  lvconvert -y --merge vg0/"$snap" > $W/merge.out 2>&1; R thin merge_rc $?; R thin merge_out "$(cat $W/merge.out)"
  lvchange -ay vg0/tg_dst >/dev/null 2>&1
  [ "$(digest tg_dst)" = "$a" ] && R thin rolled_back yes || R thin rolled_back no
}

srvpolicy() {   # a remote target's snapshots follow the server's [server.target_snapshot]: keep_last = 3 (the live target and two copies)
                # over three pushes (the client only asks); a client --keep is refused before connecting
  lv sp_src 8M; fill sp_src 8; lv sp_dst 8M
  printf '[server]\nallow = ["/dev/vg0/*"]\n[server.target_snapshot]\nkeep_last = 3\nsize = "4M"\n' > $W/sp.toml
  local rsh="sh -c 'shift 2; exec sh -c \"\$1 --config $W/sp.toml\"' rsh"
  for i in 1 2 3; do
    bd srvpolicy$i sync --no-progress --rsh "$rsh" --remote-cmd "$BD" --target-snapshot --job sp /dev/vg0/sp_src localhost:/dev/vg0/sp_dst
  done
  bd srvpolicy_keep sync --no-progress --rsh "$rsh" --remote-cmd "$BD" --target-snapshot --keep 0 --job sp /dev/vg0/sp_src localhost:/dev/vg0/sp_dst
  R srvpolicy same "$(same sp_src sp_dst)"
  R srvpolicy kept "$(lvs --noheadings -o lv_name,lv_tags vg0 | grep 'blkdelta-job:sp' | grep -c '^ *sp_dst-')"
  R srvpolicy cow_size "$(lvs --noheadings --units m --nosuffix -o lv_name,lv_size vg0 | awk '$1 ~ /^sp_dst-/ { print $2; exit }')"
}

holdopen() {   # lvremove keeps failing while the device is open: retried, then reported, never swallowed
  lv h_src 8M
  node dist/test/vm/hold-open.js vg0 h_src > $W/holdopen.out 2> $W/holdopen.err
  R holdopen rc $?; R holdopen out "$(cat $W/holdopen.out)"; R holdopen err "$(cat $W/holdopen.err)"
  R holdopen left "$(lvs --noheadings -o lv_name,lv_tags vg0 | grep -c 'blkdelta-job:holdopen')"
  for n in $(lvs --noheadings -o lv_name,lv_tags vg0 | awk '/blkdelta-job:holdopen/ { print $1 }'); do lvremove -y vg0/$n >/dev/null 2>&1; done
}

untagged() {   # `snapshots clean` removes only blkdelta's source snapshots, never other LVs
  lv u_src 8M
  q lvcreate -y -s -L 4M -n u_foreign --addtag backup --addtag blkdelta-job:u vg0/u_src
  q lvcreate -y -s -L 4M -n u_plain vg0/u_src
  q lvcreate -y -s -L 4M -n u_ours --addtag blkdelta --addtag blkdelta-source --addtag blkdelta-job:u vg0/u_src
  q lvcreate -y -s -L 4M -n u_tgt --addtag blkdelta --addtag blkdelta-target --addtag blkdelta-job:u vg0/u_src
  local targets; targets=$(tagged blkdelta-target)
  bd untagged_list snapshots list --job u --json
  bd untagged snapshots clean --job u
  R untagged lvs "$(lvs --noheadings -o lv_name vg0 | tr -d ' ' | grep '^u_' | sort | tr '\n' ' ')"
  R untagged targets_before "$targets"; R untagged targets_after "$(tagged blkdelta-target)"
}

q pvcreate -y /dev/vda; q vgcreate vg0 /dev/vda
for s in ${@:-overflow maxfill maxfill_nodm sigterm sigkill thin srvpolicy holdopen untagged}; do
  t0=$(cut -d' ' -f1 /proc/uptime)
  $s
  R $s seconds "$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a }')"
done
