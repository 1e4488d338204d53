// The IntelliJ glue. Built where the IntelliJ Platform and the plugins below can be downloaded
// (not on the project's CI machines): `gradle :plugin:buildPlugin` from editors/jetbrains.
plugins {
    java
    id("org.jetbrains.intellij.platform") version "2.2.1"
}

group = "dev.tether"
version = providers.gradleProperty("pluginVersion").get()

java {
    toolchain { languageVersion.set(JavaLanguageVersion.of(17)) }
}

repositories {
    mavenCentral()
    intellijPlatform { defaultRepositories() }
}

dependencies {
    implementation(project(":core"))
    intellijPlatform {
        intellijIdeaUltimate(providers.gradleProperty("platformVersion"))
        bundledPlugins("com.intellij.java", "org.jetbrains.plugins.gradle", "org.jetbrains.idea.maven",
            "com.intellij.modules.json", "JavaScript", "NodeJS")
        plugins(
            "org.jetbrains.plugins.go:" + providers.gradleProperty("goPluginVersion").get(),
            "Pythonid:" + providers.gradleProperty("pythonPluginVersion").get(),
        )
    }
}

// The config file's JSON Schema ships inside the plugin (registered for .tether/*.json).
val copySchema by tasks.registering(Copy::class) {
    from(rootDir.resolve("../../schemas")) { include("tether.schema.json") }
    into(layout.buildDirectory.dir("generated/resources/schemas"))
}
sourceSets["main"].resources.srcDir(layout.buildDirectory.dir("generated/resources"))
tasks.processResources { dependsOn(copySchema) }

intellijPlatform {
    pluginConfiguration {
        version = providers.gradleProperty("pluginVersion")
        ideaVersion { sinceBuild = "243" }
    }
}
