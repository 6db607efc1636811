// What a chat app needs from generation (issue 13 item 5): finish reasons, log-probabilities,
// logit bias and logits processor, the token history, the end-of-turn token and Conversation;
// run by KimiLinearTests.Main (same environment).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using KimiLinear;

internal static partial class KimiLinearTests
{
    private static void RunChatGenerationTests()
    {
        Run("finish reason of each end", "KL_TOKENIZER_MODEL", FinishReasons);
        Run("GenerateAsync reports the finish reason", "KL_TOKENIZER_MODEL", AsyncFinishReason);
        Run("steps carry log-probabilities when asked", "KL_TOKENIZER_MODEL", Logprobs);
        Run("banning the greedy token changes the first token", "KL_TOKENIZER_MODEL", LogitBiasBans);
        Run("a processor that changes nothing: same tokens; it sees the history", "KL_TOKENIZER_MODEL", ProcessorNoOp);
        Run("a processor writes the logits", "KL_TOKENIZER_MODEL", ProcessorWrites);
        Run("a processor returning true ends with Callback", "KL_TOKENIZER_MODEL", ProcessorStops);
        Run("a processor's exception reaches the caller", "KL_TOKENIZER_MODEL", ProcessorThrows);
        Run("Session.Tokens: the prompt and the generated", "KL_TOKENIZER_MODEL", SessionTokens);
        Run("Chat stops at the end-of-turn token", "KL_TOKENIZER_MODEL", ChatStopsAtEndOfTurn);
        Run("Conversation appends only the new tokens", "KL_TOKENIZER_MODEL", ConversationAppendsOnlyNewTokens);
        Run("Conversation: regenerate and edit give what a fresh session gives", "KL_TOKENIZER_MODEL", ConversationRegenerateAndEdit);
        Run("Conversation needs a chat format", "KL_TINY_MODEL", ConversationNeedsChatFormat);
    }

    private static GenerateOptions Options(int maxNewTokens)
    {
        return new GenerateOptions { MaxNewTokens = maxNewTokens };
    }

    private static Session Prompted(Model model)
    {
        Session s = model.CreateSession();
        s.Append(model.Tokenize(Prompt, parseSpecial: true));
        return s;
    }

    /// <summary>Reads one enumeration to its end; its token ids.</summary>
    private static int[] Ids(Generation g)
    {
        foreach (string piece in g) { }
        return g.Tokens.Select(t => t.Token).ToArray();
    }

    private static int[] Greedy(Model model, int n)
    {
        using (Session s = Prompted(model)) return Ids(s.Generate(Options(n)));
    }

    private static void FinishReasons()
    {
        using (Model model = LoadTokenizerModel())
        {
            int[] expected = Greedy(model, 4);
            using (Session s = Prompted(model))
            {
                Generation g = s.Generate(Options(4));
                Check.True(g.FinishReason == null, "no reason before it runs");
                Check.SequenceEqual(expected, Ids(g), "the greedy tokens");
                Check.Equal<FinishReason?>(FinishReason.Length, g.FinishReason, "max tokens");
            }
            using (Session s = Prompted(model))
            {
                var options = Options(10);
                options.StopTokens = new[] { expected[1] };
                Generation g = s.Generate(options);
                Check.SequenceEqual(expected.Take(2).ToArray(), Ids(g), "the stop token is appended");
                Check.Equal<FinishReason?>(FinishReason.StopToken, g.FinishReason, "stop token");
            }
            using (Session s = Prompted(model))
            {
                var options = Options(10);
                options.StopTokens = new[] { expected[1] };
                GeneratedTokens t = s.GenerateTokens(options);
                foreach (var step in t) { }
                Check.Equal<FinishReason?>(FinishReason.StopToken, t.FinishReason, "GenerateTokens reports it too");
            }
            using (Session s = Prompted(model))
            {
                Generation g = s.Generate(Options(4));
                var e = g.GetEnumerator();
                s.Cancel(); // after Generate (which drops an older request): stops the first step
                Check.Throws<KimiLinearException.Cancelled>(() => e.MoveNext(), "the step is cancelled");
                Check.Equal<FinishReason?>(FinishReason.Cancelled, g.FinishReason, "cancelled");
                Check.Equal(0, g.Tokens.Count, "nothing appended");
            }
        }
    }

    private static void AsyncFinishReason()
    {
        using (Model model = LoadTokenizerModel())
        using (Session s = Prompted(model))
        {
            AsyncGeneration g = s.GenerateAsync(Options(3));
            ReadAll(g).GetAwaiter().GetResult();
            Check.Equal<FinishReason?>(FinishReason.Length, g.FinishReason, "max tokens");
            Check.SequenceEqual(Greedy(model, 3), g.Tokens.Select(t => t.Token).ToArray(), "its tokens");

            var cts = new CancellationTokenSource();
            AsyncGeneration cancelled = s.GenerateAsync(Options(100000), cts.Token);
            var e = cancelled.GetAsyncEnumerator();
            Check.True(e.MoveNextAsync().GetAwaiter().GetResult(), "a first piece");
            cts.Cancel();
            e.DisposeAsync().GetAwaiter().GetResult();
            Check.Equal<FinishReason?>(FinishReason.Cancelled, cancelled.FinishReason, "the token cancelled it");
        }
    }

    private static void Logprobs()
    {
        using (Model model = LoadTokenizerModel())
        {
            float[] logits;
            using (Session s = model.CreateSession()) logits = s.AppendWithLogits(model.Tokenize(Prompt, parseSpecial: true));
            double max = logits.Max(), sum = logits.Sum(x => Math.Exp(x - max));
            double logZ = max + Math.Log(sum);

            using (Session s = Prompted(model))
            {
                var options = Options(3);
                options.TopLogprobs = 5;
                Generation g = s.Generate(options);
                Check.SequenceEqual(Greedy(model, 3), Ids(g), "the same tokens");
                GenerationStep first = g.Tokens[0];
                Check.True(Math.Abs(logits[first.Token] - logZ - first.Logprob) < 1e-3,
                           "the log-softmax of the logits: " + (logits[first.Token] - logZ) + " vs " + first.Logprob);
                foreach (GenerationStep t in g.Tokens)
                {
                    Check.Equal(5, t.TopLogprobs.Count, "five alternatives");
                    Check.Equal(t.Token, t.TopLogprobs[0].Token, "greedy: the token is the most likely");
                    Check.Equal(t.Logprob, t.TopLogprobs[0].Logprob, "its logprob first");
                    for (int i = 1; i < 5; ++i)
                        Check.True(t.TopLogprobs[i - 1].Logprob >= t.TopLogprobs[i].Logprob, "most likely first");
                }
            }
            using (Session s = Prompted(model))
            {
                var options = Options(2);
                options.Logprobs = true;
                Generation g = s.Generate(options);
                Ids(g);
                Check.True(g.Tokens[0].Logprob <= 0, "a logprob");
                Check.Equal(0, g.Tokens[0].TopLogprobs.Count, "no alternatives");
            }
            using (Session s = Prompted(model))
            {
                Generation g = s.Generate(Options(2));
                Ids(g);
                Check.True(float.IsNaN(g.Tokens[0].Logprob), "not asked: NaN");
            }
            Check.Throws<ArgumentOutOfRangeException>(() => new GenerateOptions { TopLogprobs = 21 }, "21 > 20");
            Check.Throws<ArgumentOutOfRangeException>(() => new GenerateOptions { TopLogprobs = -1 }, "-1");
        }
    }

    private static void LogitBiasBans()
    {
        using (Model model = LoadTokenizerModel())
        {
            int first = Greedy(model, 1)[0];
            using (Session s = Prompted(model))
            {
                var options = Options(1);
                options.LogitBias = new Dictionary<int, float> { { first, float.NegativeInfinity } };
                Check.True(Ids(s.Generate(options))[0] != first, "another first token");
            }
            using (Session s = Prompted(model))
            {
                var options = Options(1);
                options.LogitBias[model.Info.VocabSize] = 1f;
                Check.Throws<KimiLinearException.InvalidArgument>(() => s.Generate(options), "an id outside the vocabulary");
                options.LogitBias = new Dictionary<int, float> { { first, float.NaN } };
                Check.Throws<KimiLinearException.InvalidArgument>(() => s.Generate(options), "a NaN bias");
                Check.SequenceEqual(model.Tokenize(Prompt, parseSpecial: true), s.Tokens, "a failed Generate changed nothing");
            }
        }
    }

    private static void ProcessorNoOp()
    {
        using (Model model = LoadTokenizerModel())
        {
            int[] expected = Greedy(model, 5);
            int[] prompt = model.Tokenize(Prompt, parseSpecial: true);
            var histories = new List<int[]>();
            int length = 0;
            using (Session s = Prompted(model))
            {
                var options = Options(5);
                options.LogitsProcessor = (logits, history) =>
                {
                    length = logits.Length;
                    histories.Add(history);
                    return false;
                };
                Generation g = s.Generate(options);
                Check.SequenceEqual(expected, Ids(g), "the same tokens");
                Check.Equal<FinishReason?>(FinishReason.Length, g.FinishReason, "max tokens");
            }
            Check.Equal(model.Info.VocabSize, length, "the logits of the vocabulary");
            Check.Equal(5, histories.Count, "called per step");
            Check.SequenceEqual(prompt, histories[0], "the history: the prompt");
            Check.SequenceEqual(prompt.Concat(new[] { expected[0] }).ToArray(), histories[1], "then the first token");
        }
    }

    private static void ProcessorWrites()
    {
        using (Model model = LoadTokenizerModel())
        {
            int first = Greedy(model, 1)[0];
            using (Session s = Prompted(model))
            {
                var options = Options(1);
                options.LogitsProcessor = (logits, history) =>
                {
                    logits[first] = float.NegativeInfinity;
                    return false;
                };
                Check.True(Ids(s.Generate(options))[0] != first, "the written logits are sampled");
            }
        }
    }

    private static void ProcessorStops()
    {
        using (Model model = LoadTokenizerModel())
        using (Session s = Prompted(model))
        {
            ulong before = s.Position;
            var options = Options(5);
            options.LogitsProcessor = (logits, history) => (ulong)history.Length > before;
            Generation g = s.Generate(options);
            Check.SequenceEqual(Greedy(model, 1), Ids(g), "one token, then the processor stops it");
            Check.Equal<FinishReason?>(FinishReason.Callback, g.FinishReason, "callback");
            Check.Equal(before + 1, s.Position, "nothing appended at the stop");
        }
    }

    private static void ProcessorThrows()
    {
        using (Model model = LoadTokenizerModel())
        using (Session s = Prompted(model))
        {
            ulong before = s.Position;
            var boom = new InvalidOperationException("boom");
            var options = Options(5);
            options.LogitsProcessor = (logits, history) => { throw boom; };
            Generation g = s.Generate(options);
            var thrown = Check.Throws<InvalidOperationException>(() => g.GetEnumerator().MoveNext(), "rethrown");
            Check.True(ReferenceEquals(boom, thrown), "the processor's own exception");
            Check.Equal<FinishReason?>(FinishReason.Error, g.FinishReason, "error");
            Check.Equal(before, s.Position, "nothing appended");
            Check.SequenceEqual(Greedy(model, 2), Ids(s.Generate(Options(2))), "the session goes on");
        }
    }

    private static void SessionTokens()
    {
        using (Model model = LoadTokenizerModel())
        using (Session s = Prompted(model))
        {
            int[] prompt = model.Tokenize(Prompt, parseSpecial: true);
            Check.SequenceEqual(prompt, s.Tokens, "the prompt");
            int[] all = prompt.Concat(Ids(s.Generate(Options(4)))).ToArray();
            Check.SequenceEqual(all, s.Tokens, "the prompt and the generated");
            Check.Equal((ulong)all.Length, s.Position, "position of them");
            using (Session fork = s.Fork()) Check.SequenceEqual(all, fork.Tokens, "a fork keeps them");
            s.Reset();
            Check.Equal(0, s.Tokens.Length, "reset clears them");
        }
    }

    private static void ChatStopsAtEndOfTurn()
    {
        using (Model model = LoadTokenizerModel())
        using (Session s = model.CreateSession())
        {
            int eot = model.Info.EotToken;
            Check.SequenceEqual(new[] { eot }, model.Tokenize("<|im_end|>", parseSpecial: true), "EotToken is <|im_end|>");
            var chat = new[] { ChatMessage.User("Hi") };
            var options = Options(8);
            options.LogitBias[eot] = 1e4f; // <|im_end|> first: Chat stops there without being told
            Generation g = s.Chat(chat, options);
            Check.Equal("", string.Concat(g), "no text");
            Check.Equal<FinishReason?>(FinishReason.StopToken, g.FinishReason, "stopped at the end of turn");
            Check.SequenceEqual(model.TokenizeChat(chat, true).Concat(new[] { eot }).ToArray(), s.Tokens, "prompt + <|im_end|>");
            Check.Equal(0, options.StopTokens.Count, "the caller's options are not changed");
        }
    }

    private static int[] Fresh(Model model, IEnumerable<ChatMessage> messages, GenerateOptions options)
    {
        using (Session s = model.CreateSession()) return Ids(s.Chat(messages, options));
    }

    private static void ConversationAppendsOnlyNewTokens()
    {
        using (Model model = LoadTokenizerModel())
        {
            var options = Options(4);
            var start = new[] { ChatMessage.System("Be brief.") };
            using (var chat = new Conversation(model, start, options))
            {
                Generation first = chat.Say("Sort: 3 1 2");
                var asked = new[] { start[0], ChatMessage.User("Sort: 3 1 2") };
                Check.SequenceEqual(model.TokenizeChat(asked, true), chat.Session.Tokens, "the first prompt: the chat format's");
                Check.Equal((long)chat.Session.Position, chat.Prefilled, "all of it prefilled");
                Check.SequenceEqual(Fresh(model, asked, options), Ids(first), "a fresh session's reply");

                int[] before = chat.Tokens; // recorded: the reply closed by <|im_end|>
                Check.Equal(model.Info.EotToken, before[before.Length - 1], "the turn is closed");
                long prefilledBefore = chat.Prefilled;
                ulong sessionBefore = chat.Session.Position;
                Generation second = chat.Say("Add: 2 + 2");
                int[] now = chat.Session.Tokens;
                long added = now.Length - before.Length;
                Check.SequenceEqual(before, now.Take(before.Length).ToArray(), "the history kept, not read again");
                Check.Equal(added + (before.Length - (long)sessionBefore), chat.Prefilled - prefilledBefore, "only the new tokens prefilled");
                int[] message = model.TokenizeChat(new[] { ChatMessage.System(""), ChatMessage.User("Add: 2 + 2") }, true);
                int[] empty = model.TokenizeChat(new[] { ChatMessage.System("") }, false);
                Check.Equal((long)(message.Length - empty.Length), added, "the new message and the assistant's opening");
                Ids(second);
                Check.Equal(5, chat.Messages.Count, "two turns");
                Check.Equal("assistant", chat.Messages[4].Role, "the reply recorded");
                Check.Equal(second.Text, chat.Messages[4].Content, "its text");
                Check.Throws<InvalidOperationException>(() => second.GetEnumerator().MoveNext(), "a reply is read once");
            }
        }
    }

    private static void ConversationRegenerateAndEdit()
    {
        using (Model model = LoadTokenizerModel())
        {
            var options = Options(5);
            var start = new[] { ChatMessage.System("Be brief.") };
            using (var chat = new Conversation(model, start, options))
            {
                int[] reply = Ids(chat.Say("Sort: 3 1 2"));
                long prefilled = chat.Prefilled;
                Generation again = chat.Regenerate();
                Check.Equal(prefilled, chat.Prefilled, "restored from the kept state: nothing read again");
                Check.SequenceEqual(reply, Ids(again), "greedy again");
                Check.Equal(3, chat.Messages.Count, "the reply replaced");

                var sampled = Options(5);
                sampled.Sampling = new SamplingParams { Temperature = 1.0f, Seed = 7 };
                int[] regenerated = Ids(chat.Regenerate(sampled));
                var asked = new[] { start[0], ChatMessage.User("Sort: 3 1 2") };
                Check.SequenceEqual(Fresh(model, asked, sampled), regenerated, "sampled: a fresh session agrees");

                chat.Edit(1, "Sort: 9 8");
                int[] edited = Ids(chat.Reply());
                var editedChat = new[] { start[0], ChatMessage.User("Sort: 9 8") };
                Check.SequenceEqual(Fresh(model, editedChat, options), edited, "edited: a fresh session agrees");
                Check.Equal("Sort: 9 8", chat.Messages[1].Content, "the edit kept");
            }
        }
    }

    private static void ConversationNeedsChatFormat()
    {
        using (Model tiny = Model.Load(tinyModel, Device.Cpu))
        {
            Check.Equal(-1, tiny.Info.EotToken, "no end-of-turn token");
            Check.Throws<ArgumentException>(() => new Conversation(tiny), "no chat format");
        }
    }
}
