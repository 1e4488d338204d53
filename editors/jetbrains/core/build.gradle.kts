// The core as a Gradle module, for the plugin build. Its tests run with build.sh (which needs no
// download): `bash editors/jetbrains/build.sh`.
plugins {
    `java-library`
}

java {
    toolchain { languageVersion.set(JavaLanguageVersion.of(17)) }
}

repositories { mavenCentral() }

dependencies {
    // The IDE bundles Gson; the core compiles against it and does not ship it.
    compileOnly("com.google.code.gson:gson:2.10.1")
    testImplementation("com.google.code.gson:gson:2.10.1")
    testImplementation("org.junit.jupiter:junit-jupiter:5.9.2")
    testRuntimeOnly("org.junit.platform:junit-platform-launcher")
}

tasks.test {
    useJUnitPlatform()
    environment("TETHER_REPO", rootDir.resolve("../..").canonicalPath)
}
