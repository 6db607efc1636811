// BpeVocabulary::encode_piece (a heap of candidate merges for long pieces, a rescan for short
// ones) against the plainest statement of tiktoken's rule, kept here only: merge the
// lowest-rank adjacent pair, leftmost on ties, until no adjacent pair is a token. Random
// vocabularies and pieces of every length, and the trained vocabulary of the test model.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/tokenizer/bpe_vocabulary.h"
#include "tiny_model.h"

namespace {

// tiktoken's byte_pair_encode, quadratic and obviously right.
std::vector<int32_t> reference_merge(const kl::BpeVocabulary& vocab, const std::string& piece) {
    const int32_t whole = vocab.rank(piece.data(), piece.size());
    if (whole >= 0) return {whole};
    std::vector<std::string> parts;
    for (char c : piece) parts.emplace_back(1, c);
    for (;;) {
        int32_t best = -1;
        size_t at = 0;
        for (size_t k = 0; k + 1 < parts.size(); ++k) {
            const std::string pair = parts[k] + parts[k + 1];
            const int32_t r = vocab.rank(pair.data(), pair.size());
            if (r >= 0 && (best < 0 || r < best)) best = r, at = k;
        }
        if (best < 0) break;
        parts[at] += parts[at + 1];
        parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    std::vector<int32_t> ids;
    for (const std::string& part : parts) ids.push_back(vocab.rank(part.data(), part.size()));
    return ids;
}

std::vector<int32_t> merged(const kl::BpeVocabulary& vocab, const std::string& piece) {
    std::vector<int32_t> ids;
    vocab.encode_piece(piece, ids);
    return ids;
}

// The 256 bytes, then tokens made by joining two earlier tokens over a small alphabet, in a
// random rank order among themselves (tiktoken files need not be a merge history: any ranks
// must merge the same way as tiktoken merges them).
kl::BpeVocabulary random_vocabulary(std::mt19937& rng, const std::string& alphabet,
                                    size_t n_merged) {
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
    std::vector<std::string> pool;
    for (char c : alphabet) pool.emplace_back(1, c);
    std::vector<std::string> added;
    for (size_t tries = 0; added.size() < n_merged && tries < 50 * n_merged; ++tries) {
        const std::string t = pool[rng() % pool.size()] + pool[rng() % pool.size()];
        if (t.size() > 12 || std::find(pool.begin(), pool.end(), t) != pool.end()) continue;
        pool.push_back(t);
        added.push_back(t);
    }
    std::shuffle(added.begin(), added.end(), rng);
    tokens.insert(tokens.end(), added.begin(), added.end());
    return kl::BpeVocabulary::parse(kl::tiktoken_model_text(tokens), "random");
}

std::string random_piece(std::mt19937& rng, const std::string& alphabet, size_t length) {
    std::string s;
    // Runs of one character now and then: they make long chains of equal-rank pairs.
    while (s.size() < length) {
        const char c = alphabet[rng() % alphabet.size()];
        s.append(rng() % 8 == 0 ? 1 + rng() % 40 : 1, c);
    }
    s.resize(length);
    return s;
}

TEST(BpeMerge, EqualsTheReferenceOnRandomVocabulariesAndPieces) {
    std::mt19937 rng(2026);
    size_t compared = 0;
    for (int v = 0; v < 12; ++v) {
        const std::string alphabet = v % 3 == 0 ? "ab" : v % 3 == 1 ? "abc " : "ab\xC3\xA9\x80";
        const kl::BpeVocabulary vocab = random_vocabulary(rng, alphabet, 20 + 40 * v);
        for (int trial = 0; trial < 300; ++trial) {
            // Lengths on both sides of the scan/heap switch, and some long ones.
            const size_t length = trial % 10 == 0 ? 100 + rng() % 400 : 1 + rng() % 60;
            const std::string piece = random_piece(rng, alphabet, length);
            ASSERT_EQ(merged(vocab, piece), reference_merge(vocab, piece))
                << "vocabulary " << v << ", piece of " << length << " bytes";
            ++compared;
        }
    }
    EXPECT_EQ(compared, 12u * 300u);
}

TEST(BpeMerge, EqualsTheReferenceOnTheTrainedVocabulary) {
    const std::string dir = kl::test::tiny_model_dir("--preset small --seed 7");
    ASSERT_FALSE(dir.empty());
    std::ifstream in(dir + "/tiktoken.model", std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    const kl::BpeVocabulary vocab = kl::BpeVocabulary::parse(text.str(), dir);
    std::mt19937 rng(7);
    const std::vector<std::string> alphabets = {
        "etaoinshrdlu", "aaab", " e", "0123456789", "\xC3\xA9\xC3\xA8", "\xE6\xBC\xA2\xE5\xAD\x97",
        "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D", "-=_"};
    for (const std::string& alphabet : alphabets)
        for (int trial = 0; trial < 200; ++trial) {
            const size_t length = trial % 8 == 0 ? 100 + rng() % 500 : 1 + rng() % 80;
            const std::string piece = random_piece(rng, alphabet, length);
            ASSERT_EQ(merged(vocab, piece), reference_merge(vocab, piece))
                << "alphabet \"" << alphabet << "\", piece of " << length << " bytes";
        }
    // Long runs of one character: the case that was quadratic.
    for (const char* unit : {"a", "\xC3\xA9", "\xE6\xBC\xA2", "\xF0\x9F\x98\x80", " "}) {
        std::string piece;
        for (int i = 0; i < 200; ++i) piece += unit;
        EXPECT_EQ(merged(vocab, piece), reference_merge(vocab, piece)) << unit;
    }
}

}  // namespace
