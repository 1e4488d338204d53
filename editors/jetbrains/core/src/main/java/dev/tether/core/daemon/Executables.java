package dev.tether.core.daemon;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/** Finding executables the way a shell does. */
public final class Executables {
    private Executables() {}

    /** {@code name} when it has a slash (if executable), else the first match on {@code PATH} of {@code env}. */
    public static Path find(String name, Map<String, String> env) {
        if (name == null || name.isEmpty()) {
            return null;
        }
        if (name.contains("/")) {
            Path p = Path.of(name);
            return Files.isExecutable(p) && !Files.isDirectory(p) ? p.toAbsolutePath() : null;
        }
        String path = env.get("PATH");
        if (path == null) {
            path = "/usr/local/bin:/usr/bin:/bin";
        }
        for (String dir : path.split(File.pathSeparator)) {
            if (dir.isEmpty()) {
                continue;
            }
            Path p = Path.of(dir, name);
            if (Files.isExecutable(p) && !Files.isDirectory(p)) {
                return p;
            }
        }
        return null;
    }
}
