// kimi accuracy: how far a quantized form of a model's weights moves its logits from bf16's.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "cancel_on_signal.h"
#include "cli.h"
#include "kimi_linear.h"

namespace kimi {

// KL(p || q) of two logit rows, in nats, and whether their argmax agrees.
std::pair<double, bool> compare_logits(const float* p_logits, const float* q_logits, size_t n) {
    auto log_softmax = [n](const float* x, std::vector<double>& out) {
        double top = x[0];
        for (size_t i = 1; i < n; ++i) top = std::max(top, static_cast<double>(x[i]));
        double sum = 0;
        for (size_t i = 0; i < n; ++i) sum += std::exp(x[i] - top);
        out.resize(n);
        for (size_t i = 0; i < n; ++i) out[i] = x[i] - top - std::log(sum);
    };
    std::vector<double> lp, lq;
    log_softmax(p_logits, lp);
    log_softmax(q_logits, lq);
    double kl = 0;
    for (size_t i = 0; i < n; ++i) kl += std::exp(lp[i]) * (lp[i] - lq[i]);
    const auto argmax = [n](const float* x) { return std::max_element(x, x + n) - x; };
    return {kl, argmax(p_logits) == argmax(q_logits)};
}

// The logits of each position of --positions tokens, sequences of --seq read from fresh
// sessions, of the model in bf16 and in the format of --weights. SIGINT or SIGTERM stop it
// between two sequences, or in one through kl_session_cancel.
int cmd_accuracy(const Options& o) {
    if (!o.has("weights") || o.get("weights", "") == "auto" || o.get("weights", "") == "bf16")
        throw UsageError{"accuracy needs --weights fp8|int4"};
    Options reference = o;
    reference.values["weights"] = "bf16";
    const ModelHandle base = load(reference);
    const ModelHandle quantized = load(o);
    const SignalStop stop;  // the measurements' (see before_measurement)
    const size_t vocab = model_info(base.get()).vocab_size;
    const size_t positions = static_cast<size_t>(o.integer("positions", 2000, 1, INT32_MAX));
    const size_t seq = static_cast<size_t>(o.integer("seq", 256, 2, INT32_MAX));
    std::vector<int32_t> tokens;
    if (o.has("text")) {
        std::ifstream in(o.get("text", ""), std::ios::binary);
        if (!in) throw UsageError{"cannot read " + o.get("text", "")};
        const std::string text((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
        size_t n = 0;
        check(kl_tokenize(base.get(), text.data(), text.size(), 0, nullptr, 0, &n));
        tokens.resize(n);
        check(kl_tokenize(base.get(), text.data(), text.size(), 0, tokens.data(), n, &n));
        if (tokens.size() < positions)
            throw UsageError{"--text holds " + std::to_string(tokens.size()) +
                             " tokens, fewer than --positions"};
    } else {
        std::mt19937_64 rng(o.seed("seed"));
        tokens.resize(positions);
        for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % vocab);
    }
    double kl_sum = 0;
    size_t agree = 0, done = 0;
    std::vector<float> p, q;
    while (done < positions) {
        const size_t n = std::min(seq, positions - done);
        p.resize(n * vocab), q.resize(n * vocab);
        for (auto [model, out] : {std::pair{base.get(), &p}, {quantized.get(), &q}}) {
            const SessionHandle session = new_session(model);
            const CancelOnSignal cancel(session.get());
            before_measurement();
            check(kl_session_append(session.get(), tokens.data() + done, n, KL_LOGITS_ALL,
                                    out->data()));
        }
        for (size_t i = 0; i < n; ++i) {
            const auto [kl, same] = compare_logits(&p[i * vocab], &q[i * vocab], vocab);
            kl_sum += kl;
            agree += same;
        }
        done += n;
    }
    std::printf(
        "weights: %s\npositions: %zu (sequences of %zu)\nmean KL(bf16 || %s): %.6f nats\n"
        "top-1 agreement: %.2f%% (%zu/%zu)\n",
        o.get("weights", "").c_str(), done, seq, o.get("weights", "").c_str(),
        kl_sum / static_cast<double>(done),
        100.0 * static_cast<double>(agree) / static_cast<double>(done), agree, done);
    return 0;
}

}  // namespace kimi
