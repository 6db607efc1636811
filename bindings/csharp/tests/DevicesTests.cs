// Model.Load's devices (kl_model_params.devices, issue 16) reach the library: the tiny model split
// over two CPU shards reports 2 devices and gives the whole model's logits (to 1e-5) and greedy
// tokens; a bad list throws the library's status. Run by KimiLinearTests.Main (same environment).
using System;
using System.Linq;
using KimiLinear;

internal static partial class KimiLinearTests
{
    private static void RunDevicesTests()
    {
        Run("Load's devices: two CPU shards equal the whole model", "KL_TINY_MODEL", TwoCpuDevicesEqualTheWholeModel);
        Run("Load's devices: a bad list -> the library's status", "KL_TINY_MODEL", BadDeviceLists);
    }

    // PromptLogitsAndGreedyTokens of the model split over `devices`; its device count.
    private static float[] SplitRun(int[] devices, out int[] tokens, out int nDevices)
    {
        using (Model m = Model.Load(tinyModel, Device.Cpu, threads: 2, devices: devices))
        {
            nDevices = m.Info.Devices;
            return PromptLogitsAndGreedyTokens(m, out tokens);
        }
    }

    private static void TwoCpuDevicesEqualTheWholeModel()
    {
        int[] wantTokens, tokens, oneTokens;
        int n;
        float[] want = SplitRun(null, out wantTokens, out n);
        Check.Equal(1, n, "an unsplit model is on one device");
        float[] got = SplitRun(new[] { 0, 1 }, out tokens, out n);
        Check.Equal(2, n, "Info.Devices of the split model");
        double scale = want.Max(x => Math.Abs(x));
        double error = want.Zip(got, (a, b) => (double)Math.Abs(a - b)).Max();
        Check.True(error <= 1e-5 * scale, "logits within 1e-5: max error " + error + ", max |logit| " + scale);
        Check.SequenceEqual(wantTokens, tokens, "greedy tokens");
        float[] one = SplitRun(new[] { 0 }, out oneTokens, out n);
        Check.Equal(1, n, "one device listed: the whole model");
        Check.True(one.SequenceEqual(want), "one device listed gives the whole model's logits");
    }

    private static void Refused<TException>(Status status, string fragment, params int[] devices)
        where TException : KimiLinearException
    {
        var e = Check.Throws<TException>(
            () => Model.Load(tinyModel, Device.Cpu, devices: devices).Dispose(), "devices " + string.Join(",", devices));
        Check.Equal(status, e.Status, "the status of " + e.Message);
        Check.True(e.Message.Contains(fragment), "the message names the problem: " + e.Message);
    }

    private static void BadDeviceLists()
    {
        Refused<KimiLinearException.InvalidArgument>(Status.InvalidArgument, "devices[1] is 0, as devices[0] is", 0, 0);
        Refused<KimiLinearException.InvalidArgument>(Status.InvalidArgument, "n_devices is 9",
                                                     Enumerable.Range(0, 9).ToArray());
        Refused<KimiLinearException.InvalidArgument>(Status.InvalidArgument, "devices[1] is -1", 0, -1);
        // 3 does not divide the 2 heads
        Refused<KimiLinearException.Unsupported>(Status.Unsupported, "kda_num_heads", 0, 1, 2);
    }
}
