#!/usr/bin/env bash
# The kimi CLI end to end on a tiny model: info, run (streamed ids, reproducible by seed),
# usage and load errors with their exit codes, --devices (two CPU shards); quantize (FP8 and
# INT4 round trips, its progress bar on a terminal only, SIGINT and SIGTERM cancelling it), run,
# a load, bench and accuracy stopped by them, and accuracy with their usage errors, empty
# entries of comma lists refused; then the text commands (tokenize, run --prompt, chat, a chat reply stopped by
# SIGINT, a chat message or reply that does not fit the context, the ids a chat feeds turn by
# turn) on a model folder with a tokenizer.
set -euo pipefail
kimi=$1
make_tiny_model=$2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$make_tiny_model" "$dir/m" --preset tiny --seed 5 >/dev/null

"$kimi" info "$dir/m" | grep -qx "n_kda_layers: 3" || { echo "FAIL: info"; exit 1; }
a=$("$kimi" run "$dir/m" --prompt-tokens 1,2,3 --max-new 12 --temperature 0.9 --seed 8 2>/dev/null)
b=$("$kimi" run "$dir/m" --prompt-tokens 1,2,3 --max-new 12 --temperature 0.9 --seed 8 2>/dev/null)
[[ $(echo $a | wc -w) -eq 12 ]] || { echo "FAIL: run printed '$a'"; exit 1; }
[[ $a == "$b" ]] || { echo "FAIL: same seed, different tokens: '$a' vs '$b'"; exit 1; }
bench=$("$kimi" bench "$dir/m" --prompt-len 16 --context 0,40 --decode 4 --repeats 1)
grep -qE "^ +16 +[0-9.]+ +[0-9.]+ " <<<"$bench" && grep -qE "^ +40 +[0-9.]+ " <<<"$bench" \
  || { echo "FAIL: bench printed '$bench'"; exit 1; }
# Its decode floor reads the model's 143,630 active weights as the backend holds them: fp32 on
# the CPU, bf16 on CUDA (kl_model_info's decode_weight_bytes).
grep -qE "decode reads (561\.1|280\.5) KiB of weights" <<<"$bench" \
  || { echo "FAIL: bench's decode floor in '$bench'"; exit 1; }
# Batched decode: the batch call and as many threads generating through the model's batcher,
# each row with its step time and a threads rate above zero.
batch=$("$kimi" bench "$dir/m" --batch 1,3 --batch-only --context 8 --decode 3 --batch-wait-us 1000)
grep -qE "^ +8 +3 +[0-9.]+ +[0-9.]+ .* [0-9.]*[1-9][0-9.]*$" <<<"$batch" \
  || { echo "FAIL: bench --batch printed '$batch'"; exit 1; }

set +e
"$kimi" run "$dir/m" --prompt-tokens 1,x 2>/dev/null; usage=$?
"$kimi" run "$dir/m" --prompt-tokens 999 2>"$dir/err"; bad_token=$?
"$kimi" info "$dir/missing" 2>/dev/null; missing=$?
set -e
[[ $usage -eq 2 ]] || { echo "FAIL: bad usage exited $usage"; exit 1; }
[[ $bad_token -eq 1 ]] && grep -q "KL_ERR_INVALID_ARGUMENT: token 999" "$dir/err" \
  || { echo "FAIL: out-of-range token exited $bad_token: $(cat "$dir/err")"; exit 1; }
[[ $missing -eq 1 ]] || { echo "FAIL: missing model exited $missing"; exit 1; }

# --devices: the model split over two CPU shards greedily generates the tokens of the whole
# one, info reports the split; the library's refusal of a list (a repeated entry) comes back
# as its message, exit 1.
whole=$("$kimi" run "$dir/m" --device cpu --prompt-tokens 1,2,3 --max-new 12 2>/dev/null)
split=$("$kimi" run "$dir/m" --device cpu --devices 0,1 --prompt-tokens 1,2,3 --max-new 12 2>/dev/null)
[[ $(echo $whole | wc -w) -eq 12 && $split == "$whole" ]] \
  || { echo "FAIL: --devices 0,1 generated '$split', the whole model '$whole'"; exit 1; }
"$kimi" info "$dir/m" --device cpu --devices 0,1 | grep -qx "n_devices: 2" \
  || { echo "FAIL: info --devices 0,1 does not report n_devices: 2"; exit 1; }
set +e
"$kimi" run "$dir/m" --device cpu --devices 0,0 --prompt-tokens 1,2,3 2>"$dir/err"; repeated=$?
set -e
[[ $repeated -eq 1 ]] && grep -q "KL_ERR_INVALID_ARGUMENT: devices\[1\] is 0, as devices\[0\] is" "$dir/err" \
  || { echo "FAIL: --devices 0,0 exited $repeated: $(cat "$dir/err")"; exit 1; }

# quantize: the written checkpoint (sharded, its quantization_config) runs the tokens of the
# bf16 one quantized on load, and rewriting it in its own format gives identical files.
for format in fp8 int4; do
  "$kimi" quantize "$dir/m" "$dir/$format" --format $format --shard-mb 0.02 >/dev/null \
    || { echo "FAIL: quantize --format $format"; exit 1; }
  grep -q '"quantization_config"' "$dir/$format/config.json" \
    || { echo "FAIL: quantize $format: no quantization_config"; exit 1; }
  shards=$(ls "$dir/$format" | grep -c '^model-[0-9]*-of-[0-9]*\.safetensors$')
  [[ $shards -gt 1 ]] || { echo "FAIL: quantize $format --shard-mb 0.02 wrote $shards shard(s)"; exit 1; }
  stored=$("$kimi" run "$dir/$format" --device cpu --prompt-tokens 1,2,3 --max-new 8 2>/dev/null)
  on_load=$("$kimi" run "$dir/m" --device cpu --weights $format --prompt-tokens 1,2,3 --max-new 8 2>/dev/null)
  [[ $(echo $stored | wc -w) -eq 8 && $stored == "$on_load" ]] \
    || { echo "FAIL: $format: stored '$stored', quantized on load '$on_load'"; exit 1; }
  "$kimi" quantize "$dir/$format" "$dir/$format-again" --format $format --shard-mb 0.02 >/dev/null
  diff -r "$dir/$format" "$dir/$format-again" >/dev/null \
    || { echo "FAIL: rewriting the $format checkpoint changed files"; exit 1; }
done
# quantize's progress bar goes to stderr only when it is a terminal (script(1) makes one).
"$kimi" quantize "$dir/m" "$dir/quiet" --format fp8 2>"$dir/err" >/dev/null
[[ ! -s $dir/err ]] || { echo "FAIL: quantize wrote to a stderr that is no terminal: $(cat "$dir/err")"; exit 1; }
if command -v script >/dev/null; then
  bar=$(script -qec "'$kimi' quantize '$dir/m' '$dir/bar' --format int4 >/dev/null" /dev/null | tr '\r' '\n')
  grep -qE "^quantizing \[#+\] 100%$" <<<"$bar" \
    || { echo "FAIL: quantize on a terminal showed no bar ending at 100%: '$bar'"; exit 1; }
fi
# quantize stopped by a signal mid-write (KIMI_TEST_HOLD_QUANTIZE=0.5 holds it at half way,
# shards written, until one comes): the library removes what it wrote, kimi says "cancelled"
# and exits 128 + the signal. SIGINT to a foreground kimi, as Ctrl-C sends it (env restores
# the default action where the test itself started with SIGINT ignored): the folder it made is
# gone, and a re-run into it succeeds.
reset_int=()
if env --default-signal=INT true 2>/dev/null; then reset_int=(env --default-signal=INT); fi
signal_when_held() {  # signal_when_held PID_FILE OUT SIGNAL...: once kimi is held, OUT listed
  local pid_file=$1 out=$2 sig
  shift 2
  for _ in $(seq 600); do grep -q "held at" "$dir/err" 2>/dev/null && break; sleep 0.05; done
  ls "$out" >"$dir/held"
  for sig in "$@"; do kill -"$sig" "$(cat "$pid_file")"; done
}
rm -f "$dir/err"
signal_when_held "$dir/pid" "$dir/cut" INT &
set +e
(echo $BASHPID >"$dir/pid"
 KIMI_TEST_HOLD_QUANTIZE=0.5 exec ${reset_int[@]+"${reset_int[@]}"} "$kimi" quantize "$dir/m" "$dir/cut" \
   --format fp8 --shard-mb 0.02 >/dev/null 2>"$dir/err"); cut=$?
set -e
wait
grep -q '^model-.*\.safetensors$' "$dir/held" || { echo "FAIL: no shard written when held"; exit 1; }
[[ $cut -eq 130 ]] && grep -qx "kimi: cancelled by SIGINT" "$dir/err" && [[ ! -e $dir/cut ]] \
  || { echo "FAIL: quantize at SIGINT exited $cut, left '$(ls "$dir/cut" 2>&1)': $(cat "$dir/err")"; exit 1; }
"$kimi" quantize "$dir/m" "$dir/cut" --format fp8 --shard-mb 0.02 >/dev/null \
  && diff -r "$dir/fp8" "$dir/cut" >/dev/null \
  || { echo "FAIL: quantize into the folder of a cancelled one"; exit 1; }
# A background job of a script has SIGINT ignored, and kimi leaves it so; SIGTERM stops it. An
# output folder that was there (empty) stays, emptied again.
mkdir "$dir/cut-term"
rm -f "$dir/err"
KIMI_TEST_HOLD_QUANTIZE=0.5 "$kimi" quantize "$dir/m" "$dir/cut-term" --format int4 \
  --shard-mb 0.02 >/dev/null 2>"$dir/err" &
echo $! >"$dir/pid-term"
signal_when_held "$dir/pid-term" "$dir/cut-term" INT TERM
set +e
wait "$(cat "$dir/pid-term")"; cut=$?
set -e
grep -q '^model-.*\.safetensors$' "$dir/held" || { echo "FAIL: no int4 shard written when held"; exit 1; }
[[ $cut -eq 143 ]] && grep -qx "kimi: cancelled by SIGTERM" "$dir/err" && [[ -d $dir/cut-term ]] \
  && [[ -z $(ls -A "$dir/cut-term") ]] \
  || { echo "FAIL: quantize at SIGTERM exited $cut, left '$(ls -A "$dir/cut-term" 2>&1)': $(cat "$dir/err")"; exit 1; }
# run stopped by a signal mid-generation (KIMI_TEST_HOLD_GENERATE=3 holds it once it printed
# its third token, until one comes): what it printed stays, "cancelled", exit 128 + the signal.
# SIGINT to a foreground kimi, as Ctrl-C sends it; SIGTERM to a background job, whose SIGINT
# (ignored) kimi leaves ignored.
rm -f "$dir/err"
signal_when_held "$dir/pid" "$dir" INT &
set +e
(echo $BASHPID >"$dir/pid"
 KIMI_TEST_HOLD_GENERATE=3 exec ${reset_int[@]+"${reset_int[@]}"} "$kimi" run "$dir/m" \
   --prompt-tokens 1,2,3 --max-new 12 --temperature 0.9 --seed 8 >"$dir/out" 2>"$dir/err"); stopped=$?
set -e
wait
first3=$(echo $a | cut -d' ' -f1-3)
[[ $stopped -eq 130 ]] && grep -qx "kimi: cancelled by SIGINT" "$dir/err" \
  && [[ $(echo $(cat "$dir/out")) == "$first3" ]] \
  || { echo "FAIL: run at SIGINT exited $stopped, printed '$(cat "$dir/out")' (not '$first3'): $(cat "$dir/err")"; exit 1; }
rm -f "$dir/err"
KIMI_TEST_HOLD_GENERATE=3 "$kimi" run "$dir/m" --prompt-tokens 1,2,3 --max-new 12 --temperature 0.9 \
  --seed 8 >"$dir/out" 2>"$dir/err" &
echo $! >"$dir/pid-term"
signal_when_held "$dir/pid-term" "$dir" INT TERM
set +e
wait "$(cat "$dir/pid-term")"; stopped=$?
set -e
[[ $stopped -eq 143 ]] && grep -qx "kimi: cancelled by SIGTERM" "$dir/err" \
  && [[ $(echo $(cat "$dir/out")) == "$first3" ]] \
  || { echo "FAIL: run at SIGTERM exited $stopped, printed '$(cat "$dir/out")': $(cat "$dir/err")"; exit 1; }
# A load stopped by SIGINT (KIMI_TEST_HOLD_LOAD=0.5 holds it at half the tensors read) is
# cancelled through its progress callback: "cancelled", exit 130, nothing printed.
rm -f "$dir/err"
signal_when_held "$dir/pid" "$dir" INT &
set +e
(echo $BASHPID >"$dir/pid"
 KIMI_TEST_HOLD_LOAD=0.5 exec ${reset_int[@]+"${reset_int[@]}"} "$kimi" info "$dir/m" \
   >"$dir/out" 2>"$dir/err"); stopped=$?
set -e
wait
[[ $stopped -eq 130 ]] && grep -qx "kimi: cancelled by SIGINT" "$dir/err" && [[ ! -s $dir/out ]] \
  || { echo "FAIL: info at SIGINT during the load exited $stopped: $(cat "$dir/out") $(cat "$dir/err")"; exit 1; }
# bench stopped by SIGINT in a measured call (KIMI_TEST_HOLD_MEASURE=1 holds its first, the
# prefill of 16 tokens, until one comes, then lets the watcher's kl_session_cancel land): that
# prefill is cancelled (no row for it, no decode table), "cancelled", exit 130. accuracy by
# SIGTERM in the quantized model's first sequence (the second measured call): 143, no figures.
rm -f "$dir/err"
signal_when_held "$dir/pid" "$dir" INT &
set +e
(echo $BASHPID >"$dir/pid"
 KIMI_TEST_HOLD_MEASURE=1 exec ${reset_int[@]+"${reset_int[@]}"} "$kimi" bench "$dir/m" \
   --prompt-len 16 --context 0 --decode 4 --repeats 1 >"$dir/out" 2>"$dir/err"); stopped=$?
set -e
wait
[[ $stopped -eq 130 ]] && grep -qx "kimi: cancelled by SIGINT" "$dir/err" \
  && grep -qE "^ +prompt +prefill ms" "$dir/out" && ! grep -qE "^ +16 |TPOT" "$dir/out" \
  || { echo "FAIL: bench at SIGINT exited $stopped: $(cat "$dir/out") $(cat "$dir/err")"; exit 1; }
rm -f "$dir/err"
KIMI_TEST_HOLD_MEASURE=2 "$kimi" accuracy "$dir/m" --device cpu --weights int4 --positions 48 \
  --seq 16 >"$dir/out" 2>"$dir/err" &
echo $! >"$dir/pid-term"
signal_when_held "$dir/pid-term" "$dir" TERM
set +e
wait "$(cat "$dir/pid-term")"; stopped=$?
set -e
[[ $stopped -eq 143 ]] && grep -qx "kimi: cancelled by SIGTERM" "$dir/err" && [[ ! -s $dir/out ]] \
  || { echo "FAIL: accuracy at SIGTERM exited $stopped: $(cat "$dir/out") $(cat "$dir/err")"; exit 1; }
# accuracy: its figures, a KL divergence above zero and an agreement out of the positions.
acc=$("$kimi" accuracy "$dir/m" --device cpu --weights int4 --positions 48 --seq 16)
grep -qE "^mean KL\(bf16 \|\| int4\): [0-9.]+ nats$" <<<"$acc" \
  && ! grep -qE "^mean KL.*: 0\.0+ nats$" <<<"$acc" \
  && grep -qE "^top-1 agreement: [0-9.]+% \([0-9]+/48\)$" <<<"$acc" \
  || { echo "FAIL: accuracy printed '$acc'"; exit 1; }

# Usage errors exit 2 and say what is wrong; a refused output folder exits 1 with the status.
expect_usage() {  # expect_usage FRAGMENT ARGS...
  local fragment=$1 status
  shift
  set +e
  "$kimi" "$@" >/dev/null 2>"$dir/err"; status=$?
  set -e
  [[ $status -eq 2 ]] && grep -qF -- "$fragment" "$dir/err" \
    || { echo "FAIL: kimi $* exited $status: $(head -1 "$dir/err")"; exit 1; }
}
expect_usage "--devices needs comma-separated integers" run "$dir/m" --devices 0,x --prompt-tokens 1
expect_usage "--devices lists 9 devices, at most 8" info "$dir/m" --devices 0,1,2,3,4,5,6,7,8
# Lists: an empty entry is no entry (a trailing comma, two commas, a given "").
expect_usage '--devices needs comma-separated integers, got "0,1," (an empty entry)' \
  info "$dir/m" --devices 0,1,
expect_usage '--prompt-tokens needs comma-separated integers, got "1,,2" (an empty entry)' \
  run "$dir/m" --prompt-tokens 1,,2
expect_usage '--prompt-tokens needs comma-separated integers, got ",1" (an empty entry)' \
  run "$dir/m" --prompt-tokens ,1
expect_usage '--stop-tokens needs comma-separated integers, got "" (an empty entry)' \
  run "$dir/m" --prompt-tokens 1 --stop-tokens ""
expect_usage '--prompt-len needs comma-separated integers, got "8," (an empty entry)' \
  bench "$dir/m" --prompt-len 8,
expect_usage '--context needs comma-separated integers, got "0,,40" (an empty entry)' \
  bench "$dir/m" --context 0,,40
expect_usage '--batch needs comma-separated integers, got "" (an empty entry)' \
  bench "$dir/m" --batch ""
# Numbers: strtod's and strtol's leading space and '+' are malformed here too.
expect_usage '--max-new needs a whole number from 0 to 4294967295, got " 5"' \
  run "$dir/m" --prompt-tokens 1 --max-new " 5"
expect_usage '--max-new needs a whole number from 0 to 4294967295, got "+5"' \
  run "$dir/m" --prompt-tokens 1 --max-new +5
# Counts are whole numbers in range (a negative one used to become a huge count); reals are
# decimal (strtod's nan, inf and hexadecimal forms are not); a seed is any unsigned 64-bit.
expect_usage '--max-new needs a whole number from 0 to 4294967295, got "-1"' \
  run "$dir/m" --prompt-tokens 1 --max-new -1
expect_usage '--max-new needs a whole number from 0 to 4294967295, got "1.5"' \
  run "$dir/m" --prompt-tokens 1 --max-new 1.5
expect_usage '--top-k needs a whole number from 0 to 2147483647, got "0x10"' \
  run "$dir/m" --prompt-tokens 1 --top-k 0x10
expect_usage '--repeats needs a whole number from 1 to 2147483647, got "0"' bench "$dir/m" --repeats 0
expect_usage '--temperature needs a number, got "nan"' run "$dir/m" --prompt-tokens 1 --temperature nan
expect_usage '--top-p needs a number, got "inf"' run "$dir/m" --prompt-tokens 1 --top-p inf
expect_usage '--seed needs a whole number from 0 to 2^64-1, got "-3"' \
  run "$dir/m" --prompt-tokens 1 --seed -3
[[ $("$kimi" run "$dir/m" --prompt-tokens 1 --max-new 2 --temperature 1 --seed 18446744073709551615) ]] \
  || { echo "FAIL: --seed 2^64-1 refused"; exit 1; }
expect_usage '--temperature needs a number, got "+0.5"' run "$dir/m" --prompt-tokens 1 --temperature +0.5
expect_usage '--prompt-tokens needs comma-separated integers, got "1, 2"' run "$dir/m" --prompt-tokens "1, 2"
expect_usage '--prompt-tokens needs comma-separated integers, got "+1"' run "$dir/m" --prompt-tokens +1
expect_usage "needs an input and an output folder" quantize "$dir/m"
expect_usage "needs --format fp8|int4" quantize "$dir/m" "$dir/q"
expect_usage "--format must be fp8 or int4" quantize "$dir/m" "$dir/q" --format bf16
expect_usage "--format must be fp8 or int4" quantize "$dir/m" "$dir/q" --format fp4
expect_usage "--shard-mb must be positive" quantize "$dir/m" "$dir/q" --format fp8 --shard-mb 0
expect_usage "accuracy needs --weights fp8|int4" accuracy "$dir/m"
expect_usage "accuracy needs --weights fp8|int4" accuracy "$dir/m" --weights bf16
expect_usage "cannot read $dir/none.txt" accuracy "$dir/m" --weights fp8 --text "$dir/none.txt"
[[ ! -e $dir/q ]] || { echo "FAIL: a refused quantize made its output folder"; exit 1; }
set +e
"$kimi" quantize "$dir/m" "$dir/fp8" --format fp8 2>"$dir/err"; taken=$?
set -e
[[ $taken -eq 1 ]] && grep -q "KL_ERR_INVALID_ARGUMENT: the output folder .* is not empty" "$dir/err" \
  || { echo "FAIL: quantize into a used folder exited $taken: $(cat "$dir/err")"; exit 1; }

"$make_tiny_model" "$dir/t" --preset small --seed 7 >/dev/null
ids=$(printf 'Hello <|im_end|>' | "$kimi" tokenize "$dir/t" --parse-special)
plain=$(printf 'Hello <|im_end|>' | "$kimi" tokenize "$dir/t")
[[ $(echo $ids | wc -w) -lt $(echo $plain | wc -w) ]] \
  || { echo "FAIL: tokenize: '$ids' (special) vs '$plain' (plain)"; exit 1; }
a=$("$kimi" run "$dir/t" --prompt "Once upon a time" --max-new 12 --temperature 0.9 --seed 4 2>/dev/null)
b=$("$kimi" run "$dir/t" --prompt "Once upon a time" --max-new 12 --temperature 0.9 --seed 4 2>/dev/null)
[[ -n $a && $a == "$b" ]] || { echo "FAIL: run --prompt: '$a' vs '$b'"; exit 1; }
"$kimi" run "$dir/t" --prompt "Hi" --chat --max-new 6 >/dev/null 2>&1 || { echo "FAIL: run --chat"; exit 1; }
chat=$(printf 'hello\nhow are you?\n' | "$kimi" chat "$dir/t" --max-new 6 --temperature 0.8 --seed 2)
[[ -n $chat ]] || { echo "FAIL: chat printed nothing"; exit 1; }
# chat: SIGINT during a reply (held after its second token) ends that reply and the next
# message is answered, exit 0. The reply keeps its two tokens and is closed as a cut-off one:
# the conversation goes on as with --max-new 2, whose output the stopped chat's starts with.
cut2=$(printf 'hello\nhow are you?\n' | "$kimi" chat "$dir/t" --max-new 2 --temperature 0.8 --seed 2)
rm -f "$dir/err"
signal_when_held "$dir/pid" "$dir" INT &
set +e
printf 'hello\nhow are you?\n' | (echo $BASHPID >"$dir/pid"
  KIMI_TEST_HOLD_GENERATE=2 exec ${reset_int[@]+"${reset_int[@]}"} "$kimi" chat "$dir/t" \
    --max-new 6 --temperature 0.8 --seed 2 >"$dir/out" 2>"$dir/err"); stopped=$?
set -e
wait
stopped_chat=$(cat "$dir/out")
[[ $stopped -eq 0 ]] && grep -qx "kimi: reply stopped by SIGINT" "$dir/err" \
  && [[ $stopped_chat == "$cut2"* && $stopped_chat != "$cut2" ]] \
  || { echo "FAIL: chat at SIGINT exited $stopped, printed '$stopped_chat' (cut at 2: '$cut2'): $(cat "$dir/err")"; exit 1; }
# chat: a message longer than the context left (4096 tokens a session here) is refused, named,
# and dropped, the session unchanged: the next message is answered as if it had not been
# typed, exit 0. A reply that fills the context stops there and the chat goes on, its next
# message refused in turn (4066 words: 4092 ids with the markup, 4 left for the reply).
set +e
dropped=$(printf 'hello\n%s\nhow are you?\n' "$(printf 'word %.0s' $(seq 5000))" \
  | "$kimi" chat "$dir/t" --max-new 6 --temperature 0.8 --seed 2 2>"$dir/err"); status=$?
set -e
[[ $status -eq 0 && $dropped == "$chat" ]] \
  && grep -q "^kimi: message dropped (KL_ERR_CONTEXT_FULL: context full: " "$dir/err" \
  || { echo "FAIL: chat with a message too long exited $status, printed '$dropped' (not '$chat'): $(cat "$dir/err")"; exit 1; }
set +e
printf '%s\nhello\n' "$(printf 'word %.0s' $(seq 4066))" \
  | "$kimi" chat "$dir/t" --max-new 64 --temperature 0.8 --seed 2 >/dev/null 2>"$dir/err"; status=$?
set -e
[[ $status -eq 0 ]] && grep -q "^kimi: reply stopped (KL_ERR_CONTEXT_FULL: " "$dir/err" \
  && grep -q "^kimi: message dropped (KL_ERR_CONTEXT_FULL: " "$dir/err" \
  || { echo "FAIL: chat whose reply fills the context exited $status: $(cat "$dir/err")"; exit 1; }
# chat: /reset after a conversation that filled the context starts a new one; its first
# message is answered as a new chat's is (greedy).
fresh=$(printf 'hello\n' | "$kimi" chat "$dir/t" --max-new 64 --temperature 0)
set +e
after=$(printf '%s\n/reset\nhello\n' "$(printf 'word %.0s' $(seq 4066))" \
  | "$kimi" chat "$dir/t" --max-new 64 --temperature 0 2>"$dir/err"); status=$?
set -e
[[ $status -eq 0 && -n $fresh && $after == *"$fresh" ]] \
  && grep -q "^kimi: the context is full: /reset starts a new conversation" "$dir/err" \
  && grep -q "^kimi: new conversation" "$dir/err" \
  || { echo "FAIL: chat /reset exited $status, printed '$after' (want it to end with '$fresh'): $(cat "$dir/err")"; exit 1; }
# chat tokenizes each message alone: the ids the session holds after three turns (replies
# empty, --max-new 0, each closed by kimi with <|im_end|>; a refused message between) are
# those of the whole conversation tokenized at once, with the default system message or the
# --system one (the format with its added tokens parsed, which kimi_linear.h says is
# kl_chat_tokenize's result for messages without added-token text).
turn() { printf '<|im_user|>user<|im_middle|>%s<|im_end|><|im_assistant|>assistant<|im_middle|><|im_end|>' "$1"; }
for system in "" "Be brief."; do
  printf 'hello\n%s\nhow are you?\nbye now\n' "$(printf 'word %.0s' $(seq 5000))" \
    | KIMI_TEST_CHAT_TOKENS="$dir/fed" "$kimi" chat "$dir/t" ${system:+--system "$system"} \
      --max-new 0 >/dev/null 2>&1
  whole=$(printf '<|im_system|>system<|im_middle|>%s<|im_end|>%s%s%s' \
    "${system:-You are a helpful assistant}" "$(turn hello)" "$(turn 'how are you?')" "$(turn 'bye now')" \
    | "$kimi" tokenize "$dir/t" --parse-special)
  [[ -s $dir/fed && $(cat "$dir/fed") == "$whole" ]] \
    || { echo "FAIL: chat (system '$system') fed '$(cat "$dir/fed" 2>&1)', the whole conversation is '$whole'"; exit 1; }
done
set +e
"$kimi" run "$dir/m" --prompt "Hi" 2>"$dir/err"; no_tokenizer=$?
set -e
[[ $no_tokenizer -eq 1 ]] && grep -q "KL_ERR_UNSUPPORTED" "$dir/err" \
  || { echo "FAIL: --prompt without a tokenizer exited $no_tokenizer: $(cat "$dir/err")"; exit 1; }
echo "OK: kimi info/run/bench/quantize/accuracy/tokenize/chat and error exits"
