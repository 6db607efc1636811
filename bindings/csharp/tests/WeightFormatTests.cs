// Model.Load's weights (kl_model_params.weight_format) reach the library: on the bf16 tiny model
// Bf16 gives the default load's logits bit for bit, Fp8 and Int4 (quantized on load) other but
// close ones; a value outside the enum is the library's InvalidArgument naming weight_format.
// Run by KimiLinearTests.Main (same environment).
using System;
using System.Linq;
using KimiLinear;

internal static partial class KimiLinearTests
{
    private static readonly int[] WeightFormatPrompt = { 1, 5, 9, 2, 7 };

    private static void RunWeightFormatTests()
    {
        Run("Load's weights reach the library", "KL_TINY_MODEL", WeightsReachTheLibrary);
        Run("Load's weights: a value outside the enum -> InvalidArgument", "KL_TINY_MODEL", BadWeightFormat);
    }

    private static float[] LastLogits(WeightFormat weights)
    {
        using (Model m = Model.Load(tinyModel, Device.Cpu, threads: 1, weights: weights))
        using (Session s = m.CreateSession())
            return s.AppendWithLogits(WeightFormatPrompt);
    }

    private static void WeightsReachTheLibrary()
    {
        float[] stored = LastLogits(WeightFormat.Auto);
        Check.True(stored.SequenceEqual(LastLogits(WeightFormat.Bf16)), "a bf16 checkpoint loaded as Bf16 is as stored");
        double scale = stored.Average(x => Math.Abs(x));
        foreach (WeightFormat format in new[] { WeightFormat.Fp8, WeightFormat.Int4 })
        {
            float[] quantized = LastLogits(format);
            Check.True(!stored.SequenceEqual(quantized), format + " changes the logits");
            double error = stored.Zip(quantized, (a, b) => (double)Math.Abs(a - b)).Average();
            Check.True(error < scale, format + " stays close: mean error " + error + ", mean |logit| " + scale);
        }
    }

    private static void BadWeightFormat()
    {
        var e = Check.Throws<KimiLinearException.InvalidArgument>(
            () => Model.Load(tinyModel, Device.Cpu, weights: (WeightFormat)4), "weights 4");
        Check.True(e.Message.Contains("weight_format"), "the message names weight_format: " + e.Message);
    }
}
