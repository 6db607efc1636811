// Batched decode (issue 14): Batch Next/Append/Generate equal each session stepped alone (greedy
// and seeded sampling, per session), sessions leaving a generation at their stop token or limit,
// all-or-nothing failures, and Model.Load's maxBatch: threads stepping their own sessions of a
// batching model get the tokens of one thread alone. Run by KimiLinearTests.Main (same environment).
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using KimiLinear;

internal static partial class KimiLinearTests
{
    private static readonly string[] BatchPrompts = { "The quick brown fox", "Remember: apple=3", "Sort: 42 7 19" };

    private static void RunBatchTests()
    {
        Run("Load's maxBatch/batchWaitUs reach the library", "KL_TOKENIZER_MODEL", BatchModelOptions);
        Run("Batch.Next equals each session's own Next", "KL_TOKENIZER_MODEL", BatchNextEqualsAlone);
        Run("Batch.Next: sampling per session", "KL_TOKENIZER_MODEL", BatchSamplingPerSession);
        Run("Batch.Append equals Append", "KL_TOKENIZER_MODEL", BatchAppendEqualsAppend);
        Run("Batch.Generate: sessions leave at stop tokens and limits", "KL_TOKENIZER_MODEL", BatchLeaves);
        Run("Batch.Generate: text equals Next alone", "KL_TOKENIZER_MODEL", BatchGenerateText);
        Run("Batch: a failed step changes no session", "KL_TOKENIZER_MODEL", BatchFailedStep);
        Run("Batch: bad batches are refused", "KL_TOKENIZER_MODEL", BatchRefused);
        Run("Batch: a pending cancel fails it and is consumed", "KL_TOKENIZER_MODEL", BatchPendingCancel);
        Run("threads on a maxBatch model get their own tokens", "KL_TOKENIZER_MODEL", BatchThreads);
    }

    private static Session[] BatchPrompted(Model model, params string[] prompts)
    {
        return prompts.Select(p =>
        {
            Session s = model.CreateSession();
            s.Append(model.Tokenize(p, parseSpecial: true));
            return s;
        }).ToArray();
    }

    private static void DisposeAll(IEnumerable<Session> sessions)
    {
        foreach (Session s in sessions) s.Dispose();
    }

    /// <summary>steps Session.Next calls on a fork of s.</summary>
    private static List<(int Token, string Piece)> Alone(Session s, int steps, SamplingParams sampling = null)
    {
        using (Session f = s.Fork())
            return Enumerable.Range(0, steps).Select(_ => f.Next(sampling)).ToList();
    }

    private static void SameSteps(IList<(int Token, string Piece)> expected, IList<(int Token, string Piece)> actual,
                                  string what)
    {
        Check.SequenceEqual(expected.Select(t => t.Token).ToList(), actual.Select(t => t.Token).ToList(), what + " tokens");
        Check.Equal(string.Join("|", expected.Select(t => t.Piece)), string.Join("|", actual.Select(t => t.Piece)),
                    what + " pieces");
    }

    private static void BatchModelOptions()
    {
        using (Model m = Model.Load(tokenizerModel, Device.Cpu, threads: 1, maxBatch: 4, batchWaitUs: 500))
            Check.True(m.Info.VocabSize > 0, "a batching model loads");
        // Past the library's bounds: its error, so the values reached it.
        var e = Check.Throws<KimiLinearException.InvalidArgument>(
            () => Model.Load(tokenizerModel, Device.Cpu, maxBatch: 5000), "maxBatch 5000");
        Check.True(e.Message.Contains("max_batch"), "the message names max_batch: " + e.Message);
        e = Check.Throws<KimiLinearException.InvalidArgument>(
            () => Model.Load(tokenizerModel, Device.Cpu, batchWaitUs: 2000000), "batchWaitUs 2 s");
        Check.True(e.Message.Contains("batch_wait_us"), "the message names batch_wait_us: " + e.Message);
        Check.Throws<ArgumentOutOfRangeException>(() => Model.Load(tokenizerModel, Device.Cpu, maxBatch: -1), "maxBatch -1");
        Check.Throws<ArgumentOutOfRangeException>(() => Model.Load(tokenizerModel, Device.Cpu, batchWaitUs: -1),
                                                  "batchWaitUs -1");
    }

    private static void BatchNextEqualsAlone()
    {
        using (Model model = LoadTokenizerModel())
        {
            Session[] sessions = BatchPrompted(model, BatchPrompts);
            try
            {
                var want = sessions.Select(s => Alone(s, 6)).ToList();
                ulong[] start = sessions.Select(s => s.Position).ToArray();
                var batch = new Batch(sessions);
                Check.Equal(3, batch.Count, "Count");
                var got = Enumerable.Range(0, 6).Select(_ => batch.Next()).ToList();
                for (int i = 0; i < 3; ++i)
                {
                    SameSteps(want[i], got.Select(step => (step[i].Token, step[i].Piece)).ToList(), "session " + i);
                    Check.Equal(start[i] + 6, sessions[i].Position, "position of session " + i);
                }
            }
            finally
            {
                DisposeAll(sessions);
            }
        }
    }

    private static void BatchSamplingPerSession()
    {
        using (Model model = LoadTokenizerModel())
        {
            var sampling = new[] { null, new SamplingParams { Temperature = 0.9f, Seed = 5 },
                                   new SamplingParams { Temperature = 1.0f, TopK = 20, Seed = 9 } };
            Session[] sessions = BatchPrompted(model, BatchPrompts);
            try
            {
                var want = Enumerable.Range(0, 3).Select(i => Alone(sessions[i], 8, sampling[i])).ToList();
                var batch = new Batch(sessions);
                var got = Enumerable.Range(0, 8).Select(_ => batch.Next(sampling)).ToList();
                for (int i = 0; i < 3; ++i)
                    SameSteps(want[i], got.Select(step => (step[i].Token, step[i].Piece)).ToList(), "session " + i);
            }
            finally
            {
                DisposeAll(sessions);
            }
        }
    }

    private static void BatchAppendEqualsAppend()
    {
        using (Model model = LoadTokenizerModel())
        {
            Session[] sessions = BatchPrompted(model, BatchPrompts);
            Session[] forks = sessions.Select(s => s.Fork()).ToArray();
            try
            {
                new Batch(sessions).Append(new[] { 5, 6, 7 });
                for (int i = 0; i < 3; ++i)
                {
                    forks[i].Append(new[] { 5 + i });
                    Check.SequenceEqual(forks[i].Tokens, sessions[i].Tokens, "history of session " + i);
                    Check.Equal(forks[i].Next(), sessions[i].Next(), "next of session " + i);
                }
            }
            finally
            {
                DisposeAll(sessions);
                DisposeAll(forks);
            }
        }
    }

    private static void BatchLeaves()
    {
        using (Model model = LoadTokenizerModel())
        {
            Session[] sessions = BatchPrompted(model, BatchPrompts);
            try
            {
                var reference = sessions.Select(s => Alone(s, 10)).ToList();
                int stop = reference[0][2].Token;
                int[] limits = { 10, 7, 2 };
                var want = new List<List<int>>();
                for (int i = 0; i < 3; ++i)
                {
                    var tokens = new List<int>();
                    foreach (var t in reference[i].Take(limits[i]))
                    {
                        tokens.Add(t.Token);
                        if (t.Token == stop) break;
                    }
                    want.Add(tokens);
                }
                ulong[] start = sessions.Select(s => s.Position).ToArray();
                var steps = new Batch(sessions).Generate(limits, new[] { stop }, new SamplingParams[3]).ToList();
                for (int i = 0; i < 3; ++i)
                {
                    var mine = steps.Where(s => s.Index == i).ToList();
                    Check.SequenceEqual(want[i], mine.Select(s => s.Token).ToList(), "tokens of session " + i);
                    Check.True(mine.Take(mine.Count - 1).All(s => s.FinishReason == null), "no reason before the last step");
                    bool stopped = mine.Last().Token == stop;
                    Check.Equal(stopped ? FinishReason.StopToken : FinishReason.Length, mine.Last().FinishReason.Value,
                                "reason of session " + i);
                    if (stopped) Check.Equal("", mine.Last().Piece, "a stop token's text is not passed on");
                    Check.Equal(start[i] + (ulong)want[i].Count, sessions[i].Position, "position of session " + i);
                }
                // Each round is one pass over the sessions still running, in their order.
                var order = new List<int>();
                for (int r = 0; r < 10; ++r)
                    for (int i = 0; i < 3; ++i)
                        if (want[i].Count > r) order.Add(i);
                Check.SequenceEqual(order, steps.Select(s => s.Index).ToList(), "order of the steps");
                Check.Equal(0, new Batch(sessions).Generate(0).Count(), "no tokens wanted, no steps");
            }
            finally
            {
                DisposeAll(sessions);
            }
        }
    }

    private static void BatchGenerateText()
    {
        using (Model model = LoadTokenizerModel())
        {
            Session[] sessions = BatchPrompted(model, BatchPrompts);
            try
            {
                var sampling = Enumerable.Range(0, 3).Select(i => new SamplingParams { Temperature = 0.7f, Seed = (ulong)i })
                                         .ToArray();
                var want = Enumerable.Range(0, 3).Select(i => Alone(sessions[i], 5, sampling[i])).ToList();
                var steps = new Batch(sessions).Generate(new[] { 5, 5, 5 }, null, sampling).ToList();
                for (int i = 0; i < 3; ++i)
                    SameSteps(want[i], steps.Where(s => s.Index == i).Select(s => (s.Token, s.Piece)).ToList(),
                              "session " + i);
            }
            finally
            {
                DisposeAll(sessions);
            }
        }
    }

    private static void BatchFailedStep()
    {
        using (Model model = LoadTokenizerModel())
        {
            int[] ids = model.Tokenize(BatchPrompts[0], parseSpecial: true);
            Session full = model.CreateSession((ulong)ids.Length);
            full.Append(ids);
            Session[] sessions = BatchPrompted(model, BatchPrompts[1], BatchPrompts[2]).Concat(new[] { full }).ToArray();
            try
            {
                var before = sessions.Select(s => s.Tokens).ToList();
                var batch = new Batch(sessions);
                var calls = new Action[] { () => batch.Next(), () => batch.Append(new[] { 1, 2, 3 }),
                                           () => batch.Generate(4).Count() };
                foreach (Action call in calls)
                {
                    var e = Check.Throws<KimiLinearException.ContextFull>(call, "a full session in the batch");
                    Check.True(e.Message.Contains("sessions[2]"), "the message names sessions[2]: " + e.Message);
                    for (int i = 0; i < 3; ++i) Check.SequenceEqual(before[i], sessions[i].Tokens, "session " + i + " unchanged");
                }
                Check.Equal(2, new Batch(sessions.Take(2)).Next().Count, "the others step on");
            }
            finally
            {
                DisposeAll(sessions);
            }
        }
    }

    private static void BatchRefused()
    {
        using (Model model = LoadTokenizerModel())
        {
            Session[] sessions = BatchPrompted(model, BatchPrompts[0], BatchPrompts[1]);
            Session a = sessions[0], b = sessions[1];
            try
            {
                ulong[] start = { a.Position, b.Position };
                var e = Check.Throws<KimiLinearException.InvalidArgument>(() => new Batch(a, b, a).Next(), "the same session twice");
                Check.True(e.Message.Contains("same session"), "the message says so: " + e.Message);
                using (Session empty = model.CreateSession())
                {
                    e = Check.Throws<KimiLinearException.InvalidArgument>(() => new Batch(a, empty).Next(), "no logits");
                    Check.True(e.Message.Contains("sessions[1]"), "the message names sessions[1]: " + e.Message);
                }
                e = Check.Throws<KimiLinearException.InvalidArgument>(
                    () => new Batch(a, b).Append(new[] { 1, model.Info.VocabSize }), "a token out of range");
                Check.True(e.Message.Contains("out of range"), "the message says so: " + e.Message);
                Check.Throws<KimiLinearException.InvalidArgument>(() => new Batch(new Session[0]), "an empty batch");
                Check.Throws<KimiLinearException.InvalidArgument>(() => new Batch(a, b).Next(new SamplingParams[1]),
                                                                  "sampling not one per session");
                Check.Throws<KimiLinearException.InvalidArgument>(() => new Batch(a, b).Append(new[] { 1 }),
                                                                  "tokens not one per session");
                Check.Throws<KimiLinearException.InvalidArgument>(
                    () => new Batch(a, b).Next(new SamplingParams { Temperature = -1f }), "a negative temperature");
                Check.Equal(start[0], a.Position, "a unchanged");
                Check.Equal(start[1], b.Position, "b unchanged");
                Session disposed = model.CreateSession();
                disposed.Dispose();
                Check.Throws<ObjectDisposedException>(() => new Batch(a, disposed).Next(), "a disposed session");
            }
            finally
            {
                DisposeAll(sessions);
            }
        }
    }

    private static void BatchPendingCancel()
    {
        using (Model model = LoadTokenizerModel())
        {
            Session[] sessions = BatchPrompted(model, BatchPrompts[0], BatchPrompts[1]);
            try
            {
                var want = sessions.Select(s => Alone(s, 1)[0]).ToList();
                ulong[] start = sessions.Select(s => s.Position).ToArray();
                sessions[1].Cancel();
                var batch = new Batch(sessions);
                var e = Check.Throws<KimiLinearException.Cancelled>(() => batch.Next(), "a pending cancel");
                Check.True(e.Message.Contains("sessions[1]"), "the message names sessions[1]: " + e.Message);
                for (int i = 0; i < 2; ++i) Check.Equal(start[i], sessions[i].Position, "session " + i + " unchanged");
                SameSteps(want, batch.Next().Select(step => (step.Token, step.Piece)).ToList(),
                          "after the cancel was consumed");
            }
            finally
            {
                DisposeAll(sessions);
            }
        }
    }

    private static void BatchThreads()
    {
        const int n = 3;
        using (Model model = LoadTokenizerModel())
        using (Model batching = Model.Load(tokenizerModel, Device.Cpu, maxBatch: n, batchWaitUs: 2000))
        {
            Session[] alone = BatchPrompted(model, BatchPrompts);
            var want = alone.Select(s => Alone(s, 12)).ToList();
            DisposeAll(alone);
            var got = new List<(int Token, string Piece)>[n];
            var errors = new List<Exception>();
            var start = new Barrier(n);
            var threads = Enumerable.Range(0, n).Select(i => new Thread(() =>
            {
                try
                {
                    using (Session s = BatchPrompted(batching, BatchPrompts[i])[0])
                    {
                        start.SignalAndWait();
                        got[i] = Enumerable.Range(0, 12).Select(_ => s.Next()).ToList();
                    }
                }
                catch (Exception e)
                {
                    lock (errors) errors.Add(e);
                }
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());
            Check.True(errors.Count == 0, "no thread failed: " + string.Join("; ", errors.Select(e => e.Message)));
            for (int i = 0; i < n; ++i) SameSteps(want[i], got[i], "thread " + i);
        }
    }
}
