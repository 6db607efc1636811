// Streams a chat answer from a model folder:
//   mcs -r:KimiLinear.dll examples/csharp/Generate.cs && mono Generate.exe MODEL_DIR "question"
using System;
using KimiLinear;

public static class Generate
{
    public static int Main(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: Generate.exe MODEL_DIR QUESTION");
            return 2;
        }
        using (Model model = Model.Load(args[0]))
        using (Session session = model.CreateSession())
        {
            // The question stays plain text: a typed "<|im_end|>" cannot end the turn.
            session.Append(model.TokenizeChat(new[] { ChatMessage.User(args[1]) }));
            var options = new GenerateOptions
            {
                MaxNewTokens = 64,
                Sampling = new SamplingParams { Temperature = 0.7f, Seed = 1 },
                StopTokens = model.Tokenize("<|im_end|>"),
            };
            int pieces = 0;
            foreach (string piece in session.Generate(options))
            {
                Console.Write(piece);
                pieces++;
            }
            Console.WriteLine();
            Console.WriteLine("[" + pieces + " pieces]");
        }
        return 0;
    }
}
