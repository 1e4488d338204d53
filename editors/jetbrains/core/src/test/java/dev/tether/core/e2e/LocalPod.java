package dev.tether.core.e2e;

import java.io.BufferedReader;
import java.io.IOException;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.concurrent.TimeUnit;

/**
 * A local pod from the Rust testkit ({@code testkit/examples/pod.rs}): a process in its own
 * network namespace and root, with {@code POD_GREETING} in its environment and
 * {@code /app/message.txt} in its files. Closing it closes the example's stdin, which tears the
 * pod down.
 */
final class LocalPod implements AutoCloseable {
    final long pid;
    private final Process process;
    private final BufferedReader out;

    private LocalPod(Process process, BufferedReader out, long pid) {
        this.process = process;
        this.out = out;
        this.pid = pid;
    }

    static LocalPod start(String name) throws IOException {
        Process p = new ProcessBuilder(Fixtures.podExample().toString(), name)
                .redirectError(ProcessBuilder.Redirect.INHERIT)
                .start();
        BufferedReader out = new BufferedReader(new InputStreamReader(p.getInputStream(), StandardCharsets.UTF_8));
        String line = out.readLine();
        if (line == null || !line.startsWith("ready pid=")) {
            p.destroy();
            throw new IOException("the pod example did not start: " + line);
        }
        long pid = Long.parseLong(line.substring("ready pid=".length()).split(" ")[0]);
        return new LocalPod(p, out, pid);
    }

    String target() {
        return "pid:" + pid;
    }

    @Override
    public void close() throws IOException {
        process.getOutputStream().close();
        try {
            if (!process.waitFor(30, TimeUnit.SECONDS)) {
                process.destroy();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            process.destroy();
        }
        out.close();
    }
}
