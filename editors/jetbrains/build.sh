#!/usr/bin/env bash
# Compiles and tests the JetBrains plugin's core (plain Java 17, no IntelliJ SDK):
#   bash editors/jetbrains/build.sh            compile, then run every test
#   bash editors/jetbrains/build.sh --compile  compile only
# The end-to-end tests need root (local pods are network namespaces), the Rust workspace built
# (`cargo build --workspace`: target/debug/tether), and python3, node, gcc and a Go toolchain.
# Debian's JDK, JUnit 5 and Gson are installed when missing. Output goes to editors/jetbrains/out/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$here/out"

need=()
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
for p in junit5 libgoogle-gson-java; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

gson=/usr/share/java/gson.jar
junit=/usr/share/java/junit-platform-console-standalone.jar
for j in "$gson" "$junit"; do
  [ -f "$j" ] || { echo "missing $j" >&2; exit 1; }
done

echo "== compiling editors/jetbrains/core"
rm -rf "$out"
mkdir -p "$out/classes" "$out/test-classes"
find "$here/core/src/main/java" -name '*.java' > "$out/main-sources.txt"
javac --release 17 -Xlint:all,-serial -Werror -encoding UTF-8 -cp "$gson" -d "$out/classes" @"$out/main-sources.txt"
find "$here/core/src/test/java" -name '*.java' > "$out/test-sources.txt"
javac --release 17 -encoding UTF-8 -cp "$gson:$junit:$out/classes" -d "$out/test-classes" @"$out/test-sources.txt"
if [ "${1:-}" = "--compile" ]; then
  exit 0
fi

echo "== building the local pod example (tether-testkit)"
(cd "$repo" && cargo build -q -p tether-testkit --example pod)

echo "== testing editors/jetbrains/core"
export TETHER_REPO="$repo"
set +e
java -cp "$gson:$junit:$out/classes:$out/test-classes" org.junit.platform.console.ConsoleLauncher \
  --disable-banner --details=tree --disable-ansi-colors \
  --reports-dir="$out/reports" --scan-classpath "$out/test-classes" "${@}" 2>&1 | tee "$out/test.log"
status=${PIPESTATUS[0]}
set -e
# One closing line in the plain "N passed, N failed" form.
python3 - "$out/reports" <<'PY'
import glob, sys, xml.etree.ElementTree as ET
t = f = s = 0
for path in glob.glob(sys.argv[1] + "/*.xml"):
    for suite in ET.parse(path).getroot().iter("testsuite"):
        t += int(suite.get("tests", 0)); f += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        s += int(suite.get("skipped", 0))
print(f"jetbrains-core: {t - f - s} passed, {f} failed, {s} skipped")
PY
exit $status
