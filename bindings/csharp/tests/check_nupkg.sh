#!/usr/bin/env bash
# ctest csharp_nupkg_consumer: the NuGet package alone, used by mono with neither MONO_PATH
# pointing at native code nor LD_LIBRARY_PATH set.
#   check_nupkg.sh NUPKG CONSUMER_SOURCE MODEL_DIR MCS MONO XBUILD
# Unpacks the package and compiles CONSUMER_SOURCE (tests/NupkgConsumer.cs) against its
# lib/netstandard2.0/KimiLinear.dll only, then runs it
#  1. from an application folder laid out as `dotnet build` lays out a package's assets:
#     the exe, KimiLinear.dll and runtimes/linux-x64/native/ (no MONO_PATH);
#  2. from a folder of its own, KimiLinear.dll taken from the unpacked package through
#     MONO_PATH (the natives come from the package's runtimes/linux-x64/native);
#  3. built by xbuild from tests/classic-project/Consumer.csproj, a classic project that
#     references the package's KimiLinear.dll and imports its build/KimiLinear.targets
#     (which copies the native libraries to the output folder);
# each must generate text with every libkimi_linear* mapped from the expected folder; and
#  4. from case 1's folder with libkimi_linear.so.1 removed: it must fail with a
#     DllNotFoundException that names the file, the folders searched and the loader's
#     reason, not a TypeInitializationException.
set -euo pipefail
nupkg=$1 consumer=$2 model=$3 mcs=$4 mono=$5 xbuild=$6
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

pkg=$work/package
mkdir "$pkg"
(cd "$pkg" && cmake -E tar xf "$nupkg")
for file in KimiLinear.nuspec lib/netstandard2.0/KimiLinear.dll build/KimiLinear.targets \
            buildTransitive/KimiLinear.targets runtimes/linux-x64/native/libkimi_linear_csharp.so \
            runtimes/linux-x64/native/libkimi_linear.so runtimes/linux-x64/native/libkimi_linear.so.1; do
  [[ -f $pkg/$file && ! -L $pkg/$file ]] || fail "the package lacks $file (or it is a link)"
done

"$mcs" -nologo -target:exe -r:"$pkg/lib/netstandard2.0/KimiLinear.dll" -out:"$work/Consumer.exe" "$consumer"
app=$work/app alone=$work/alone
mkdir -p "$app" "$alone"
cp "$work/Consumer.exe" "$pkg/lib/netstandard2.0/KimiLinear.dll" "$app/"
cp -R "$pkg/runtimes" "$app/"
cp "$work/Consumer.exe" "$alone/"

# A clean environment: nothing but PATH and a scratch HOME (no MONO_PATH, no LD_LIBRARY_PATH).
run() { env -i PATH=/usr/bin:/bin HOME="$work/home" "$@"; }
expect_package_run() { # OUTPUT NATIVE_DIR
  grep -q "generated: ." <<<"$1" || fail "the consumer printed no generated text: $1"
  local natives
  natives=$(sed -n 's/^native: //p' <<<"$1")
  [[ -n $natives ]] || fail "the consumer saw no native library mapped"
  while read -r path; do
    [[ $path == "$2/"* ]] || fail "a native library outside $2 was loaded: $path"
  done <<<"$natives"
}
out=$(cd "$work" && run "$mono" "$app/Consumer.exe" "$model") || fail "case 1 failed: $out"
expect_package_run "$out" "$app/runtimes/linux-x64/native"
out=$(cd "$work" && run MONO_PATH="$pkg/lib/netstandard2.0" "$mono" "$alone/Consumer.exe" "$model") ||
  fail "case 2 failed: $out"
expect_package_run "$out" "$pkg/runtimes/linux-x64/native"

classic=$work/classic
"$xbuild" /nologo /verbosity:quiet /p:KimiLinearPackage="$pkg" /p:ConsumerSource="$consumer" \
  /p:OutputPath="$classic/bin/" /p:BaseIntermediateOutputPath="$classic/obj/" \
  "$here/classic-project/Consumer.csproj" >"$work/xbuild.log" 2>&1 || fail "xbuild: $(cat "$work/xbuild.log")"
out=$(cd "$work" && run "$mono" "$classic/bin/Consumer.exe" "$model") || fail "case 3 failed: $out"
expect_package_run "$out" "$classic/bin"

rm "$app/runtimes/linux-x64/native/libkimi_linear.so.1"
if err=$(cd "$work" && run "$mono" "$app/Consumer.exe" "$model" 2>&1); then
  fail "case 4: the consumer ran without libkimi_linear.so.1: $err"
fi
for needle in "System.DllNotFoundException: KimiLinear cannot load its native library libkimi_linear_csharp.so" \
              "which needs libkimi_linear.so.1" "Looked in: $app (no libkimi_linear_csharp.so)" \
              "$app/runtimes/linux-x64/native (libkimi_linear.so.1: cannot open shared object file"; do
  grep -qF "$needle" <<<"$err" || fail "the error lacks '$needle': $err"
done
! grep -q "TypeInitializationException" <<<"$err" || fail "a TypeInitializationException: $err"
echo "OK: the unpacked package ran from a dotnet-style folder, through MONO_PATH and built by xbuild with"
echo "    its build/KimiLinear.targets, no LD_LIBRARY_PATH;"
echo "    without libkimi_linear.so.1 it said: $(grep -m1 DllNotFoundException <<<"$err")"
