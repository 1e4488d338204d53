package dev.tether.core.protocol;

import java.util.List;

/** A target a picker can offer; {@code path} is what to pass as {@code target} ({@code pid:1234}). */
public record Target(String path, String kind, Long pid, String executable, List<String> cmdline, String namespace,
        List<String> containers) {
    @Override
    public List<String> cmdline() {
        return cmdline == null ? List.of() : cmdline;
    }

    @Override
    public List<String> containers() {
        return containers == null ? List.of() : containers;
    }

    /** One line for a picker: the path and the command line. */
    public String label() {
        String cmd = String.join(" ", cmdline());
        if (cmd.isEmpty()) {
            cmd = executable == null ? "" : executable;
        }
        return cmd.isEmpty() ? path : path + "  " + cmd;
    }
}
