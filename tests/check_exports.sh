#!/usr/bin/env bash
# The shared library exports the C API (kl_*) and nothing else, with SONAME
# libkimi_linear.so.<ABI major>.
set -euo pipefail
lib=$1
abi_major=$2
others=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -v '^kl_' | grep -v '^_init$\|^_fini$' || true)
if [[ -n $others ]]; then
  echo "FAIL: symbols other than kl_* are exported:"; echo "$others" | head -20; exit 1
fi
count=$(nm -D --defined-only "$lib" | awk '{print $3}' | grep -c '^kl_')
for fn in kl_version kl_abi_version kl_last_error kl_status_string kl_set_log_callback \
          kl_model_params_default kl_model_load kl_model_free kl_model_info \
          kl_session_params_default kl_session_create kl_session_free kl_session_reset \
          kl_session_append kl_session_position kl_session_fork kl_session_state_size \
          kl_session_state_save kl_session_state_load kl_sampling_params_default \
          kl_session_sample kl_generate_params_default kl_session_generate kl_session_next \
          kl_session_cancel kl_session_clear_cancel kl_tokenize kl_detokenize kl_chat_template_apply \
          kl_session_tokens kl_session_generate_with_result kl_generate_params_init \
          kl_model_params_init kl_checkpoint_quantize kl_checkpoint_quantize_with_progress \
          kl_batch_next kl_batch_append; do
  nm -D --defined-only "$lib" | awk '{print $3}' | grep -qx "$fn" || { echo "FAIL: $fn missing"; exit 1; }
done
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
if [[ $soname != "libkimi_linear.so.$abi_major" ]]; then
  echo "FAIL: SONAME is '$soname', want libkimi_linear.so.$abi_major"; exit 1
fi
echo "OK: $count kl_* symbols exported, nothing else; SONAME $soname"
