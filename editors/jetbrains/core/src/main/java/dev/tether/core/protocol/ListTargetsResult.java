package dev.tether.core.protocol;

import java.util.List;

/** {@code tether/listTargets}. */
public record ListTargetsResult(List<Target> targets) {
    @Override
    public List<Target> targets() {
        return targets == null ? List.of() : targets;
    }
}
