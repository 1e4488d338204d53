package dev.tether.core.protocol;

import java.util.List;

/** What {@code initialize} advertises under {@code capabilities.experimental.tether}. */
public record TetherCapabilities(String version, int protocol, long pid, List<String> methods,
        List<String> notifications) {
    @Override
    public List<String> methods() {
        return methods == null ? List.of() : methods;
    }
}
