package dev.tether.core.daemon;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** The {@code tether} executable the client starts the daemon with, and its version. */
public final class TetherBinary {
    private final Path path;
    private volatile String version;

    public TetherBinary(Path path) {
        this.path = path;
    }

    public Path path() {
        return path;
    }

    /**
     * Finds {@code tether}: {@code configured} (a path, or a name looked up on {@code PATH}) when
     * given, else {@code tether} on the {@code PATH} of {@code env}, else {@code ~/.cargo/bin/tether}.
     */
    public static TetherBinary locate(String configured, Map<String, String> env) throws IOException {
        String want = configured == null || configured.isBlank() ? "tether" : configured.trim();
        Path found = Executables.find(want, env);
        if (found == null && (configured == null || configured.isBlank())) {
            String home = env.get("HOME");
            if (home != null) {
                Path cargo = Path.of(home, ".cargo", "bin", "tether");
                if (Files.isExecutable(cargo)) {
                    found = cargo;
                }
            }
        }
        if (found == null) {
            throw new IOException("the tether executable `" + want + "` was not found"
                    + (want.contains("/") ? "" : " on PATH") + "; install tether or set its path in the settings");
        }
        return new TetherBinary(found);
    }

    /** The version {@code tether --version} prints ({@code tether 0.1.0} → {@code 0.1.0}); run once. */
    public String version() throws IOException {
        String v = version;
        if (v != null) {
            return v;
        }
        Process p = new ProcessBuilder(List.of(path.toString(), "--version"))
                .redirectErrorStream(true)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")))
                .start();
        String out;
        try {
            out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
            if (!p.waitFor(10, TimeUnit.SECONDS) || p.exitValue() != 0) {
                throw new IOException(path + " --version failed: " + out);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        } finally {
            p.destroy();
        }
        String[] words = out.split("\\s+");
        v = words[words.length - 1];
        version = v;
        return v;
    }
}
