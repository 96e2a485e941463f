#!/bin/bash
# Instructions (callgrind Ir) per echoed message of a wsuv server, noise-free on a
# shared machine: one server under callgrind, two loadgen windows (2 s, 6 s),
# counters zeroed before and dumped after each; (Ir2 - Ir1) / (msgs2 - msgs1)
# cancels the fixed costs (start-up, handshakes). Build build/loadgen first
# (make bench-servers does; or the gcc line there).
# usage: benchmarks/ir_per_message.sh TREE c|py|aio CONNS INFLIGHT
#   TREE: a wsuv tree with its extension built in place (this one, or another
#   commit exported with git archive), for before/after comparisons.
#   EMBED=asyncio: the aio server on the asyncio loop (default uvloop).
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TREE=$(cd "$1" && pwd); KIND=$2; CONNS=$3; K=$4
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
OUT=/tmp/cgd.$$.out
if [ "$KIND" = c ]; then
  CMD=(-c "import sys; sys.path.insert(0, '$TREE'); sys.argv=['wsuv-serve','--port','$PORT','--log-level','warning','--no-compression']; from wsuv.cli import main; sys.exit(main())")
else
  EXTRA=""; [ "$KIND" = aio ] && EXTRA=",'--embed','${EMBED:-uvloop}','--style','conn'"
  CMD=(-c "import sys, runpy; sys.path.insert(0, '$TREE'); sys.argv=['$ROOT/benchmarks/peers/wsuv_echo.py','--port','$PORT','--mode','echo'$EXTRA]; runpy.run_path(sys.argv[0], run_name='__main__')")
fi
valgrind --tool=callgrind --callgrind-out-file=$OUT.%p $ROOT/.venv/bin/python "${CMD[@]}" 2>/dev/null &
VPID=$!
for i in $(seq 1 600); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.2; done
sleep 0.5
res=""
for D in 2 6; do
  callgrind_control -z $VPID >/dev/null 2>&1
  $ROOT/build/loadgen --port $PORT --conns $CONNS --inflight $K --size 64 --warmup 0 --duration $D > /tmp/cgd.$$.lg 2>&1
  callgrind_control -d $VPID >/dev/null 2>&1
  sleep 0.5
  M=$(grep -o '"messages": *[0-9]*' /tmp/cgd.$$.lg | grep -o '[0-9]*$')
  F=$(ls -t $OUT.*.* 2>/dev/null | head -1)
  I=$(grep -h '^summary:' $F | awk '{print $2}')
  res="$res $M $I"
  sleep 0.5
done
kill -KILL $VPID; wait $VPID 2>/dev/null
set -- $res
echo "$TREE $KIND c$CONNS k$K  run1 msgs=$1 ir=$2  run2 msgs=$3 ir=$4  ir/msg(diff)=$(( ($4 - $2) / ($3 - $1) ))  ir/msg(run2)=$(( $4 / $3 ))"
rm -f $OUT.* /tmp/cgd.$$.lg
