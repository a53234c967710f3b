#!/bin/sh
# The public HTTP caching test suite (http-tests/cache-tests) against examples/caching_proxy.py,
# each face in turn, and against the suite's origin alone (no cache): see BENCHMARKS.md.
#
#   git clone https://github.com/http-tests/cache-tests /tmp/cache-tests
#   (cd /tmp/cache-tests && npm i --omit=dev --no-audit --no-fund)
#   benchmarks/conformance/run.sh /tmp/cache-tests [client middleware client-middleware]
#
# Each run takes about a minute. Everything listens on 127.0.0.1 (ports 18400 and 18401); the
# results are left in $OUT (default: a new temporary directory) as FACE.json.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
suite=$(cd "$1" && pwd)
shift
faces=${*:-client middleware client-middleware}
out=${OUT:-$(mktemp -d)}
python=${PYTHON:-python}

(cd "$suite" && npm_config_protocol=http npm_config_port=18400 \
    npm_config_pidfile="$out/origin.pid" \
    exec node --require "$here/localhost.cjs" test-engine/server/server.mjs) > "$out/origin.log" 2>&1 &
origin=$!
trap 'kill $origin 2>/dev/null || true' EXIT
sleep 2

(cd "$suite" && npm run --silent cli --base=http://127.0.0.1:18400) > "$out/no-cache.json"
node "$here/count.mjs" "$suite" "$out/no-cache.json" "no cache (the origin directly)"
for face in $faces; do
    PYTHONPATH="$root" "$python" "$root/examples/caching_proxy.py" --upstream http://127.0.0.1:18400 \
        --host 127.0.0.1 --port 18401 --face "$face" > "$out/$face.log" 2>&1 &
    proxy=$!
    sleep 3
    (cd "$suite" && npm run --silent cli --base=http://127.0.0.1:18401) > "$out/$face.json"
    kill $proxy
    wait $proxy 2>/dev/null || true
    node "$here/count.mjs" "$suite" "$out/$face.json" "face $face"
done
echo "results in $out"
