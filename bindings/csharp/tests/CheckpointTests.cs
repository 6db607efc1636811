// Checkpoint.Quantize (kl_checkpoint_quantize, issue 15): the tiny bf16 model written as FP8 and
// INT4 checkpoints loads with WeightFormat.Auto as the original loads with Fp8 / Int4 (the header's
// promise: the weights as that load holds them, so the same logits bit for bit and the same greedy
// tokens); refused calls throw the library's status and leave nothing; progress rises to 1, and
// false or an exception from it cancels the write, leaving nothing. Run by KimiLinearTests.Main
// (same environment).
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using KimiLinear;

internal static partial class KimiLinearTests
{
    private static void RunCheckpointTests()
    {
        Run("Checkpoint.Quantize: loads as the on-load quantization", "KL_TINY_MODEL", AQuantizedCheckpointLoadsAsOnLoad);
        Run("Checkpoint.Quantize: shardBytes splits the tensors", "KL_TINY_MODEL", ShardBytesSplitTheTensors);
        Run("Checkpoint.Quantize: refused calls -> the library's status", "KL_TINY_MODEL", RefusedQuantizeCalls);
        Run("Checkpoint.Quantize: progress rises to exactly 1", "KL_TINY_MODEL", QuantizeProgressRises);
        Run("Checkpoint.Quantize: progress false -> Cancelled, nothing left", "KL_TINY_MODEL", QuantizeProgressCancels);
        Run("Checkpoint.Quantize: progress throws -> rethrown, nothing left", "KL_TINY_MODEL", QuantizeProgressThrows);
    }

    // A fresh empty temporary folder, removed after body.
    private static void WithTempDir(Action<string> body)
    {
        string dir = Path.Combine(Path.GetTempPath(), "kl-checkpoint-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            body(dir);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    private static float[] QuantizedRun(string dir, WeightFormat weights, out int[] tokens)
    {
        using (Model m = Model.Load(dir, Device.Cpu, threads: 2, weights: weights))
            return PromptLogitsAndGreedyTokens(m, out tokens);
    }

    private static void AQuantizedCheckpointLoadsAsOnLoad()
    {
        WithTempDir(temp =>
        {
            int[] bf16Tokens, wantTokens, tokens;
            float[] bf16 = QuantizedRun(tinyModel, WeightFormat.Auto, out bf16Tokens);
            foreach (WeightFormat format in new[] { WeightFormat.Fp8, WeightFormat.Int4 })
            {
                string output = Path.Combine(temp, format.ToString()); // made by the call
                Checkpoint.Quantize(tinyModel, output, format);
                string config = File.ReadAllText(Path.Combine(output, "config.json"));
                Check.True(config.Contains("\"quantization_config\""), format + ": config.json has a quantization_config");
                Check.True(config.Contains(format == WeightFormat.Fp8 ? "\"fp8\"" : "\"pack-quantized\""),
                           format + ": config.json names its method: " + config);
                Check.True(File.Exists(Path.Combine(output, "model.safetensors.index.json")), format + ": the shard index");
                float[] want = QuantizedRun(tinyModel, format, out wantTokens);
                float[] got = QuantizedRun(output, WeightFormat.Auto, out tokens);
                Check.True(got.SequenceEqual(want), format + ": the logits of the on-load quantization");
                Check.SequenceEqual(wantTokens, tokens, format + ": its greedy tokens");
                Check.True(!got.SequenceEqual(bf16), format + " is not the bf16 model");
            }
        });
    }

    private static void ShardBytesSplitTheTensors()
    {
        WithTempDir(temp =>
        {
            int[] wantTokens, tokens;
            Checkpoint.Quantize(tinyModel, temp, WeightFormat.Int4, 1000); // an empty folder: used
            int shards = Directory.GetFiles(temp, "*.safetensors").Length;
            Check.True(shards > 2, shards + " shards of about 1000 bytes");
            float[] want = QuantizedRun(tinyModel, WeightFormat.Int4, out wantTokens);
            Check.True(QuantizedRun(temp, WeightFormat.Auto, out tokens).SequenceEqual(want), "the logits of Int4 on load");
        });
    }

    private static void RefusedQuantizeCalls()
    {
        WithTempDir(temp =>
        {
            string used = Path.Combine(temp, "used");
            Directory.CreateDirectory(used);
            File.WriteAllText(Path.Combine(used, "notes.txt"), "mine");
            var e = Check.Throws<KimiLinearException.InvalidArgument>(
                () => Checkpoint.Quantize(tinyModel, used, WeightFormat.Int4), "a folder that is not empty");
            Check.Equal(Status.InvalidArgument, e.Status, "the status of " + e.Message);
            Check.True(e.Message.Contains("not empty"), "the message says why: " + e.Message);
            string[] left = Directory.GetFileSystemEntries(used).Select(Path.GetFileName).ToArray();
            Check.True(left.SequenceEqual(new[] { "notes.txt" }), "its files untouched: " + string.Join(", ", left));

            string never = Path.Combine(temp, "never");
            var io = Check.Throws<KimiLinearException.Io>(
                () => Checkpoint.Quantize(Path.Combine(temp, "missing"), never, WeightFormat.Fp8), "a missing inDir");
            Check.Equal(Status.Io, io.Status, "the status of " + io.Message);
            Check.True(io.Message.Contains("config.json"), "the message names config.json: " + io.Message);
            foreach (WeightFormat format in new[] { WeightFormat.Auto, WeightFormat.Bf16, (WeightFormat)7 })
            {
                e = Check.Throws<KimiLinearException.InvalidArgument>(
                    () => Checkpoint.Quantize(tinyModel, never, format), "format " + format);
                Check.True(e.Message.Contains("weight_format is 7") || e.Message.Contains("KL_WEIGHTS_FP8 or KL_WEIGHTS_INT4"),
                           "the message names the formats: " + e.Message);
            }
            Check.Throws<ArgumentNullException>(() => Checkpoint.Quantize(null, never, WeightFormat.Fp8), "inDir null");
            Check.Throws<ArgumentNullException>(() => Checkpoint.Quantize(tinyModel, null, WeightFormat.Fp8), "outDir null");
            Check.True(!Directory.Exists(never), "a refused call made no folder");
        });
    }

    private static void QuantizeProgressRises()
    {
        WithTempDir(temp =>
        {
            int[] wantTokens, tokens;
            var seen = new List<float>();
            string output = Path.Combine(temp, "q");
            Checkpoint.Quantize(tinyModel, output, WeightFormat.Fp8, 1000, progress: f =>
            {
                seen.Add(f);
                return true;
            });
            Check.True(seen.Count > 3, seen.Count + " reports");
            for (int i = 0; i < seen.Count; ++i)
            {
                Check.True(seen[i] >= 0f && seen[i] <= 1f, "within [0, 1]: " + seen[i]);
                if (i > 0) Check.True(seen[i] >= seen[i - 1], "monotone at " + i);
            }
            Check.Equal(1.0f, seen[seen.Count - 1], "last report");
            Check.True(seen[seen.Count - 2] < 1f, "1 only at the end");
            float[] want = QuantizedRun(tinyModel, WeightFormat.Fp8, out wantTokens);
            Check.True(QuantizedRun(output, WeightFormat.Auto, out tokens).SequenceEqual(want), "the logits of Fp8 on load");
        });
    }

    private static void QuantizeProgressCancels()
    {
        WithTempDir(temp =>
        {
            string whole = Path.Combine(temp, "whole");
            int total = 0;
            Checkpoint.Quantize(tinyModel, whole, WeightFormat.Int4, 1000, progress: f => ++total > 0);
            foreach (int stop in new[] { 1, total / 2 })
            {
                int calls = 0;
                string output = Path.Combine(temp, "q"); // made by the call
                var e = Check.Throws<KimiLinearException.Cancelled>(
                    () => Checkpoint.Quantize(tinyModel, output, WeightFormat.Int4, 1000, progress: f => ++calls < stop),
                    "false at call " + stop);
                Check.Equal(Status.Cancelled, e.Status, "the status of " + e.Message);
                Check.True(e.Message.Contains("cancelled"), "the message says so: " + e.Message);
                Check.Equal(stop, calls, "no report after the stop");
                Check.True(!Directory.Exists(output), "no output folder after a stop at " + stop);
                string empty = Path.Combine(temp, "empty" + stop); // there before: left empty
                Directory.CreateDirectory(empty);
                calls = 0;
                Check.Throws<KimiLinearException.Cancelled>(
                    () => Checkpoint.Quantize(tinyModel, empty, WeightFormat.Int4, 1000, progress: f => ++calls < stop),
                    "false at call " + stop + ", an empty folder");
                Check.Equal(0, Directory.GetFileSystemEntries(empty).Length, "the empty folder left empty");
                Checkpoint.Quantize(tinyModel, output, WeightFormat.Int4, 1000); // then a whole write
                Check.True(Directory.GetFiles(output).Select(Path.GetFileName).OrderBy(n => n, StringComparer.Ordinal)
                               .SequenceEqual(Directory.GetFiles(whole).Select(Path.GetFileName)
                                                  .OrderBy(n => n, StringComparer.Ordinal)),
                           "a whole write after the stop");
                Directory.Delete(output, true);
            }
        });
    }

    private static void QuantizeProgressThrows()
    {
        WithTempDir(temp =>
        {
            var boom = new InvalidOperationException("boom");
            string output = Path.Combine(temp, "q");
            var thrown = Check.Throws<InvalidOperationException>(
                () => Checkpoint.Quantize(tinyModel, output, WeightFormat.Fp8, 1000, progress: f => { throw boom; }),
                "the callback's exception");
            Check.True(ReferenceEquals(boom, thrown), "the same exception object");
            Check.True(!Directory.Exists(output), "no output folder");
        });
    }
}
