package dev.tether.core.protocol;

import com.google.gson.JsonElement;

/**
 * How a finding is fixed: {@code applied} by tether ({@code description} says what changed), or
 * for the user to do ({@code description} says how). {@code edit} is a machine-usable suggestion
 * whose keys are dotted config keys, {@code launch.FIELD}, or a file name.
 */
public record Fix(boolean applied, String description, JsonElement edit) {}
