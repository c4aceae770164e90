# Shell helpers shared by the VM scenario scripts (sourced after W is set; cwd is the checkout).
# Facts go to stdout as "R <scenario> <key> <value>" (newlines in values become "|").
R() { printf 'R %s %s %s\n' "$1" "$2" "$(printf '%s' "$3" | tr '\n' '|')"; }
q() { "$@" >/dev/null 2>>$W/setup.err || { echo "setup failed: $*: $(cat $W/setup.err)" >&2; exit 1; }; }
lv() { q lvcreate -y -L "$2" -n "$1" vg0; }
fill() { q dd if=/dev/urandom of=/dev/vg0/$1 bs=1M count=$2 oflag=direct status=none; }
zero() { q dd if=/dev/zero of=/dev/vg0/$1 bs=1M count=$2 oflag=direct status=none; }
# an LV's content digest: XXH64 (xxhsum), 3x faster than sha256sum in the TCG guest (2 s, not 6 s, per 256 MiB)
digest() { xxhsum -H1 < /dev/vg0/$1 | cut -d' ' -f1; }
same() { [ "$(digest $1)" = "$(digest $2)" ] && echo yes || echo no; }
# how many LVs in vg0 carry exactly this tag
tagged() { lvs --noheadings -o lv_tags vg0 2>/dev/null | awk -v t="$1" '{ n = split($1, a, ","); for (i = 1; i <= n; i++) if (a[i] == t) c++ } END { print c + 0 }'; }
# waits until the first MiB of a (zeroed) target is no longer zero: the sync is writing
wait_written() { for _ in $(seq 600); do cmp -s -n 1048576 /dev/vg0/$1 /dev/zero || return 0; sleep 0.2; done; echo "timeout waiting for writes to $1" >&2; }
# runs blkdelta ($BD), recording rc, stdout and stderr under scenario $1
bd() { local s=$1; shift; $BD "$@" > $W/$s.out 2> $W/$s.err; local rc=$?; R $s rc $rc; R $s out "$(cat $W/$s.out)"; R $s err "$(cat $W/$s.err)"; }
# the same with a key prefix: "<key>rc" "<key>out" "<key>err" under scenario $1 (several runs per scenario)
bdk() { local s=$1 k=$2; shift 2; $BD "$@" > $W/$s.out 2> $W/$s.err; local rc=$?; R $s ${k}rc $rc; R $s ${k}out "$(cat $W/$s.out)"; R $s ${k}err "$(cat $W/$s.err)"; }
# writes $1: an --rsh for a VM without sshd. It runs its last argument (the server command) here,
# after dropping the host (and -p PORT) before it, with RSH_EXTRA (e.g. --config FILE) appended;
# its PID goes to /tmp/bd/server.pid
make_rsh() {
  cat > "$1" <<'EOF'
#!/bin/sh
for a; do cmd=$a; done
echo $$ > /tmp/bd/server.pid
exec sh -c "exec $cmd ${RSH_EXTRA:-}"
EOF
  chmod +x "$1"
}
