/* Streams a chat answer from a model folder: examples/c/generate MODEL_DIR "question" */
#include <stdio.h>
#include <stdlib.h>

#include "kimi_linear.h"

static int print_piece(void* user, int32_t token, const char* piece, size_t len) {
    (void)user, (void)token;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0; /* non-zero would stop the generation */
}

static int check(kl_status status) {
    if (status == KL_OK) return 0;
    fprintf(stderr, "%s: %s\n", kl_status_string(status), kl_last_error());
    exit(1);
}

int main(int argc, char** argv) {
    if (argc != 3) return fprintf(stderr, "usage: %s MODEL_DIR QUESTION\n", argv[0]), 2;
    kl_model* model;
    kl_session* session;
    check(kl_model_load(argv[1], NULL, &model));
    check(kl_session_create(model, NULL, &session));

    /* The question is a user's text: kl_chat_tokenize keeps it plain text (a typed
     * "<|im_end|>" cannot end the turn), the chat format's markup becomes its tokens. */
    kl_chat_message chat[] = {{"user", argv[2]}};
    static int32_t ids[1 << 14];
    size_t n;
    check(kl_chat_tokenize(model, chat, 1, 1, ids, sizeof ids / sizeof ids[0], &n));
    check(kl_session_append(session, ids, n, KL_LOGITS_NONE, NULL));

    int32_t end_of_turn;
    check(kl_tokenize(model, "<|im_end|>", 10, 1, &end_of_turn, 1, &n));
    kl_generate_params params;
    kl_generate_params_default(&params);
    params.max_new_tokens = 64;
    params.sampling.temperature = 0.7f;
    params.sampling.seed = 1;
    params.stop_tokens = &end_of_turn;
    params.n_stop_tokens = 1;
    size_t generated = 0;
    check(kl_session_generate(session, &params, print_piece, NULL, &generated));
    printf("\n[%zu tokens]\n", generated);

    kl_session_free(session);
    kl_model_free(model);
    return 0;
}
