#!/usr/bin/env bash
# ctest java_module: the published Java artifacts keep the SWIG-generated package
# (ai.kimi.linear.internal) out of the public API, and the jar works as a module.
#   check_module.sh JAR POM SOURCES_JAR JAVADOC_JAR VERSION MODEL_DIR GREEDY_IDS_FILE
# Checks: the jar's module descriptor exports ai.kimi.linear and nothing else; the javadoc
# documents no internal class; the sources jar and the pom are the project's; a consumer
# module importing the internal package does not compile against the jar on the module path;
# packaging/consumers/java (module kimi.linear.consumer) compiles and runs there, generating
# the C reference's greedy tokens (tests/capi/greedy_ids.c).
set -euo pipefail
jar=$1 pom=$2 sources=$3 javadoc=$4 version=$5 model=$6 greedy=$7
src=$(cd "$(dirname "$0")/../../.." && pwd)
bin=${JAVA_HOME:+$JAVA_HOME/bin/}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

module=$("${bin}jar" --describe-module --file "$jar")
grep -qx "exports ai.kimi.linear" <<<"$module" || fail "the jar's module does not export ai.kimi.linear: $module"
exports=$(grep -c "^exports " <<<"$module" || true)
[[ $exports == 1 ]] || fail "the jar's module exports more than ai.kimi.linear: $module"
grep -qx "contains ai.kimi.linear.internal" <<<"$module" || fail "no internal package in the module: $module"

docs=$("${bin}jar" tf "$javadoc")
grep -q "^ai.kimi.linear/ai/kimi/linear/Model.html$" <<<"$docs" || fail "the javadoc has no Model page"
! grep -q "internal" <<<"$docs" || fail "the javadoc lists the internal package: $(grep internal <<<"$docs" | head -3)"

files=$("${bin}jar" tf "$sources")
for f in module-info.java ai/kimi/linear/Model.java ai/kimi/linear/internal/kimi_linear_nativeJNI.java; do
  grep -qx "$f" <<<"$files" || fail "the sources jar lacks $f"
done
for tag in "<groupId>ai.kimi</groupId>" "<artifactId>kimi-linear</artifactId>" "<version>$version</version>"; do
  grep -q "$tag" "$pom" || fail "$pom lacks $tag"
done

# A module that reaches for the generated classes does not compile.
mkdir -p "$work/sneaky/sneaky"
echo 'module sneaky { requires ai.kimi.linear; }' > "$work/sneaky/module-info.java"
cat > "$work/sneaky/sneaky/Sneaky.java" <<'JAVA'
package sneaky;
public class Sneaky { static long version() { return ai.kimi.linear.internal.kimi_linear_native.kl_abi_version(); } }
JAVA
if "${bin}javac" -d "$work/sneaky-out" --module-path "$jar" \
     "$work/sneaky/module-info.java" "$work/sneaky/sneaky/Sneaky.java" 2>"$work/sneaky.err"; then
  fail "a module compiled against ai.kimi.linear.internal"
fi
grep -q "package ai.kimi.linear.internal is not visible\|does not export ai.kimi.linear.internal" "$work/sneaky.err" ||
  fail "javac refused the internal import for another reason: $(cat "$work/sneaky.err")"

# The public API is enough: the consumer module compiles and runs on the module path.
"${bin}javac" -d "$work/consumer" --module-path "$jar" \
  "$src/packaging/consumers/java/module-info.java" "$src/packaging/consumers/java/consumer/Greedy.java"
out=$("${bin}java" --module-path "$jar:$work/consumer" -m kimi.linear.consumer/consumer.Greedy "$model")
[[ $out == "$(cat "$greedy")" ]] || fail "the consumer module printed '$out', the C reference '$(cat "$greedy")'"
echo "OK: module ai.kimi.linear exports only its public package; javadoc, sources and pom checked; a module consumer ran"
