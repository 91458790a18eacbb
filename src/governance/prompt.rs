//! Prompt tokens of a request, for budgets and utilization predictions, counted with the
//! real o200k_base tokenizer (`tokens`).

use super::tokens;
use crate::api::Operation;

/// Prompt tokens in `prompt_json` (the `messages`, `input` or `prompt` value). A prompt that
/// cannot be read is estimated at 4 bytes per token rather than refused: the upstream
/// validates shapes, the gateway only needs a fair charge.
pub fn count_prompt(operation: Operation, prompt_json: &[u8]) -> u32 {
    let counted = match operation {
        Operation::ChatCompletions => tokens::count_chat_prompt(prompt_json),
        _ => tokens::count_prompt_json(prompt_json),
    };
    counted.unwrap_or_else(|_| u32::try_from(estimate(prompt_json)).unwrap_or(u32::MAX))
}

/// A cheap estimate (4 bytes per token) for when no decision depends on the exact count.
pub fn estimate(prompt_json: &[u8]) -> u64 {
    (prompt_json.len() / 4) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_chat_and_falls_back() {
        let chat = br#"[{"role":"user","content":"hello world"}]"#;
        // 3 per message + role (1) + "hello world" (2) + 3 for the reply.
        assert_eq!(count_prompt(Operation::ChatCompletions, chat), 9);
        assert_eq!(count_prompt(Operation::Responses, br#""hello world""#), 2);
        assert_eq!(
            count_prompt(Operation::ChatCompletions, b"{not json at all}"),
            4
        );
    }
}
