// Session.GenerateAsync (AsyncGeneration) and Model.Load's progress callback; run by
// KimiLinearTests.Main (same environment).
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using KimiLinear;

internal static partial class KimiLinearTests
{
    private static void RunAsyncAndProgressTests()
    {
        Run("GenerateAsync: the pieces of Generate", "KL_TOKENIZER_MODEL", AsyncPiecesEqualGenerate);
        Run("GenerateAsync: token cancel stops the stream, session free", "KL_TOKENIZER_MODEL", AsyncTokenCancel);
        Run("GenerateAsync: a cancel between steps leaves none pending", "KL_TOKENIZER_MODEL", AsyncCancelBetweenSteps);
        Run("GenerateAsync: DisposeAsync waits for the step in flight", "KL_TOKENIZER_MODEL", AsyncDisposeWaitsForTheStep);
        Run("GenerateAsync: two sessions at once", "KL_TOKENIZER_MODEL", AsyncTwoSessions);
        Run("load progress rises to 1.0", "KL_TOKENIZER_MODEL", LoadProgressRises);
        Run("load progress aborts: Cancelled, or the callback's exception", "KL_TOKENIZER_MODEL", LoadProgressAborts);
    }

    /// <summary>Every piece of one enumeration, read the way mcs can (no await foreach).</summary>
    private static async Task<List<string>> ReadAll(AsyncGeneration generation)
    {
        var pieces = new List<string>();
        var e = generation.GetAsyncEnumerator();
        try
        {
            while (await e.MoveNextAsync()) pieces.Add(e.Current);
        }
        finally
        {
            await e.DisposeAsync();
        }
        return pieces;
    }

    // One step / the end, waited for here (await reads ValueTask and Task alike: the members'
    // types without KL_ASYNC_ENUMERABLE).
    private static bool StepNow(AsyncGeneration.Enumerator e)
    {
        return AwaitStep(e).GetAwaiter().GetResult();
    }

    private static async Task<bool> AwaitStep(AsyncGeneration.Enumerator e)
    {
        return await e.MoveNextAsync();
    }

    private static void EndNow(AsyncGeneration.Enumerator e)
    {
        AwaitEnd(e).GetAwaiter().GetResult();
    }

    private static async Task AwaitEnd(AsyncGeneration.Enumerator e)
    {
        await e.DisposeAsync();
    }

    private static List<string> SyncPieces(Model model, string prompt, GenerateOptions options)
    {
        using (Session s = model.CreateSession())
        {
            s.Append(model.Tokenize(prompt));
            return s.Generate(options).ToList();
        }
    }

    private static void AsyncPiecesEqualGenerate()
    {
        using (Model model = LoadTokenizerModel())
        {
            var options = new GenerateOptions
            {
                MaxNewTokens = 24,
                Sampling = new SamplingParams { Temperature = 0.9f, TopK = 40, Seed = 5 },
            };
            List<string> want = SyncPieces(model, Prompt, options);
            using (Session s = model.CreateSession())
            {
                s.Append(model.Tokenize(Prompt));
                ulong start = s.Position;
                AsyncGeneration generation = s.GenerateAsync(options);
                Check.True(want.SequenceEqual(ReadAll(generation).GetAwaiter().GetResult()), "the pieces of Generate");
#if KL_ASYNC_ENUMERABLE
                // And through the interface (what await foreach uses): a second generation.
                IAsyncEnumerable<string> asInterface = s.GenerateAsync(new GenerateOptions { MaxNewTokens = 3 });
                var e = asInterface.GetAsyncEnumerator();
                int n = 0;
                while (e.MoveNextAsync().AsTask().GetAwaiter().GetResult()) ++n;
                e.DisposeAsync().AsTask().GetAwaiter().GetResult();
                Check.Equal(3, n, "pieces through IAsyncEnumerable<string>");
#endif
                Check.True(s.Position > start, "tokens appended");
            }
        }
    }

    private static void AsyncTokenCancel()
    {
        using (Model model = LoadTokenizerModel())
        using (Session s = model.CreateSession())
        using (var cts = new CancellationTokenSource())
        {
            s.Append(model.Tokenize(Prompt));
            var e = s.GenerateAsync(new GenerateOptions { MaxNewTokens = 100000 }, cts.Token).GetAsyncEnumerator();
            int pieces = 0;
            var clock = new Stopwatch();
            bool cancelled = false;
            try
            {
                while (StepNow(e))
                {
                    if (++pieces == 3)
                    {
                        clock.Start();
                        cts.Cancel();
                    }
                }
            }
            catch (OperationCanceledException ex)
            {
                cancelled = ex.CancellationToken == cts.Token;
            }
            finally
            {
                EndNow(e);
            }
            Check.True(cancelled, "OperationCanceledException with the token");
            Check.True(clock.ElapsedMilliseconds < 5000, "stopped within 5 s");
            ulong position = s.Position;
            Check.True(position < 1000, "far before MaxNewTokens");
            s.Append(new[] { 5 }); // not busy, no cancel pending
            Check.Equal(position + 1, s.Position, "the session is usable");
        }
    }

    private static void AsyncCancelBetweenSteps()
    {
        // The token is cancelled while no step runs and the enumerator is disposed without
        // another step: the session's cancel request must not stop the next call.
        using (Model model = LoadTokenizerModel())
        using (Session s = model.CreateSession())
        using (var cts = new CancellationTokenSource())
        {
            s.Append(model.Tokenize(Prompt));
            var e = s.GenerateAsync(new GenerateOptions { MaxNewTokens = 50 }).GetAsyncEnumerator(cts.Token);
            Check.True(StepNow(e), "a first piece");
            cts.Cancel();
            bool threw = false;
            try
            {
                StepNow(e);
            }
            catch (OperationCanceledException)
            {
                threw = true;
            }
            Check.True(threw, "MoveNextAsync after the cancel throws OperationCanceledException");
            EndNow(e);
            ulong position = s.Position;
            s.Append(new[] { 5 }); // would throw Cancelled if the request were left pending
            Check.Equal(position + 1, s.Position, "appended");
        }
    }

    private static void AsyncDisposeWaitsForTheStep()
    {
        using (Model model = LoadTokenizerModel())
        using (Session s = model.CreateSession())
        {
            s.Append(model.Tokenize(Prompt));
            var e = s.GenerateAsync(new GenerateOptions { MaxNewTokens = 50 }).GetAsyncEnumerator();
            Task<bool> step = AwaitStep(e); // not awaited: its native call is running or queued
            EndNow(e);
            Check.True(step.IsCompleted, "the step returned before DisposeAsync did");
            ulong position = s.Position; // not Busy: no call runs on the session
            s.Append(new[] { 5 });
            Check.Equal(position + 1, s.Position, "appended");
        }
    }

    private static void AsyncTwoSessions()
    {
        using (Model model = LoadTokenizerModel())
        {
            var options = new GenerateOptions { MaxNewTokens = 20 };
            List<string> wantA = SyncPieces(model, Prompt, options);
            List<string> wantB = SyncPieces(model, "The sky is", options);
            using (Session a = model.CreateSession())
            using (Session b = model.CreateSession())
            {
                a.Append(model.Tokenize(Prompt));
                b.Append(model.Tokenize("The sky is"));
                Task<List<string>> ta = ReadAll(a.GenerateAsync(options));
                Task<List<string>> tb = ReadAll(b.GenerateAsync(options));
                Task.WhenAll(ta, tb).GetAwaiter().GetResult();
                Check.True(wantA.SequenceEqual(ta.Result), "session a");
                Check.True(wantB.SequenceEqual(tb.Result), "session b");
            }
        }
    }

    private static void LoadProgressRises()
    {
        var seen = new List<float>();
        using (Model model = Model.Load(tokenizerModel, Device.Cpu, progress: f =>
        {
            seen.Add(f);
            return true;
        }))
        {
            Check.True(model.HasTokenizer, "loaded");
        }
        Check.True(seen.Count >= 2, "several reports");
        for (int i = 1; i < seen.Count; ++i) Check.True(seen[i] >= seen[i - 1], "monotone");
        Check.True(seen[0] >= 0f, "from 0");
        Check.Equal(1.0f, seen[seen.Count - 1], "last report");
    }

    private static void LoadProgressAborts()
    {
        int calls = 0;
        Check.Throws<KimiLinearException.Cancelled>(
            () => Model.Load(tokenizerModel, Device.Cpu, progress: f => ++calls < 3), "false aborts the load");
        Check.Equal(3, calls, "no report after the abort");
        var boom = new InvalidOperationException("boom");
        var thrown = Check.Throws<InvalidOperationException>(
            () => Model.Load(tokenizerModel, Device.Cpu, progress: f => { throw boom; }), "the callback's exception");
        Check.True(ReferenceEquals(boom, thrown), "the same exception object");
    }
}
