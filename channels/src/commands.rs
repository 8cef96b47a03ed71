//! Chat commands every channel understands: `/start`, `/help`, `/new`, `/reset`, `/status`.

/// A command the channels handle themselves (everything else goes to the model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Start,
    Help,
    /// A fresh session (the same as `/reset`).
    New,
    Reset,
    Status,
}

impl Command {
    /// Name and description, for the platforms' command menus and `/help`.
    pub const MENU: [(&'static str, &'static str); 4] = [
        ("new", "Start a fresh conversation"),
        ("reset", "Clear this conversation's history"),
        ("status", "Show this conversation's session"),
        ("help", "What this bot does"),
    ];
}

/// How a message's text reads as a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// Not a known command: send it to the model.
    Text,
    /// A known command for this bot.
    Command(Command),
    /// A command addressed to another bot (`/help@other_bot`): ignore the message.
    OtherBot,
}

/// Reads `/command` or `/command@bot_name` (the bot name compared without regard to case).
pub fn parse(text: &str, bot_name: Option<&str>) -> Parsed {
    let Some(rest) = text.trim_start().strip_prefix('/') else {
        return Parsed::Text;
    };
    let word = rest.split_whitespace().next().unwrap_or("");
    let (name, target) = match word.split_once('@') {
        Some((name, target)) => (name, Some(target)),
        None => (word, None),
    };
    if let (Some(target), Some(me)) = (target, bot_name)
        && !target.eq_ignore_ascii_case(me.trim_start_matches('@'))
    {
        return Parsed::OtherBot;
    }
    let command = match name.to_ascii_lowercase().as_str() {
        "start" => Command::Start,
        "help" => Command::Help,
        "new" => Command::New,
        "reset" => Command::Reset,
        "status" => Command::Status,
        _ => return Parsed::Text,
    };
    Parsed::Command(command)
}

/// The `/help` (and `/start`) text.
pub fn help_text() -> String {
    let mut text = String::from(
        "I am an Open Clanker assistant: write to me and I answer. Each chat has its own \
         conversation, which I remember until you reset it.\n\n",
    );
    for (name, what) in Command::MENU {
        text.push_str(&format!("/{name} - {what}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_and_without_the_bot_name() {
        assert_eq!(parse("/new", None), Parsed::Command(Command::New));
        assert_eq!(parse("  /RESET now", None), Parsed::Command(Command::Reset));
        assert_eq!(
            parse("/status@Clanker_Bot", Some("clanker_bot")),
            Parsed::Command(Command::Status)
        );
        assert_eq!(
            parse("/status@other_bot", Some("clanker_bot")),
            Parsed::OtherBot
        );
        assert_eq!(parse("/start", Some("x")), Parsed::Command(Command::Start));
        assert_eq!(parse("/help", None), Parsed::Command(Command::Help));
        assert_eq!(parse("/weather today", None), Parsed::Text);
        assert_eq!(parse("hello /new", None), Parsed::Text);
        assert_eq!(parse("", None), Parsed::Text);
        assert!(help_text().contains("/reset"));
    }
}
