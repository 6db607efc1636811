package consumer;

import ai.kimi.linear.Model;
import ai.kimi.linear.SamplingParams;
import ai.kimi.linear.Session;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.stream.Collectors;

/** The jar's consumer (packaging/consumers/README.md): java consumer.Greedy MODEL_DIR. */
public final class Greedy {
    private static String join(int[] ids) {
        return Arrays.stream(ids).mapToObj(Integer::toString).collect(Collectors.joining(" "));
    }

    public static void main(String[] args) {
        try (Model model = Model.load(Path.of(args[0]), "auto", 0); Session session = model.newSession()) {
            int[] prompt = model.tokenize("Once upon a time", true);
            session.append(prompt);
            int[] generated = new int[16];
            for (int i = 0; i < generated.length; ++i) generated[i] = session.next(SamplingParams.greedy()).id();
            System.out.println(join(prompt) + "|" + join(generated));
        }
    }
}
