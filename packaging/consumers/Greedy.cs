// The nupkg's consumer (packaging/consumers/README.md): mono Greedy.exe MODEL_DIR. Compiled
// against the package's lib/netstandard2.0/KimiLinear.dll only.
using System;
using KimiLinear;

static class Greedy
{
    static int Main(string[] args)
    {
        using (Model model = Model.Load(args[0], Device.Auto))
        using (Session session = model.CreateSession())
        {
            int[] prompt = model.Tokenize("Once upon a time", true);
            session.Append(prompt);
            var generated = new int[16];
            for (int i = 0; i < generated.Length; ++i) generated[i] = session.Next().Token;
            Console.WriteLine(string.Join(" ", prompt) + "|" + string.Join(" ", generated));
        }
        return 0;
    }
}
