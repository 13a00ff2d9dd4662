//! Aliases -> more route names: exact aliases copy their target's route, globs give a
//! provider's served models their plain names.

use std::collections::{BTreeMap, HashMap, HashSet};

use switchyard_contract::config::ModelRoute;

use crate::store::{glob_matches, AliasRow};

/// Adds the aliases' names: a glob gives each served model of its provider whose name matches
/// that name (the most specific glob wins), overriding a plain name; an exact alias copies the
/// route of its target. Logical models keep their names.
pub(super) fn apply_aliases(
    routes: &mut BTreeMap<String, ModelRoute>,
    aliases: &[AliasRow],
    served: &HashMap<&str, Vec<&str>>,
    logical: &HashSet<&str>,
) {
    let mut globs: Vec<&AliasRow> = aliases.iter().filter(|a| a.is_glob()).collect();
    // Least specific first, so that more specific globs overwrite.
    globs.sort_by_key(|a| (a.name.chars().filter(|c| *c != '*').count(), a.name.clone()));
    for alias in globs {
        let Some(models) = served.get(alias.target.as_str()) else {
            tracing::warn!(alias = %alias.name, provider = %alias.target, "glob alias skipped: provider unknown, disabled or without models");
            continue;
        };
        for model in models.iter().filter(|m| glob_matches(&alias.name, m)) {
            if logical.contains(model) {
                continue;
            }
            let source = format!("{}/{model}", alias.target);
            let Some(route) = routes.get(&source).filter(|r| {
                matches!(r.targets.as_slice(), [t] if t.provider == alias.target && t.model == *model)
            }) else {
                continue;
            };
            let mut route = route.clone();
            route.name = (*model).to_owned();
            routes.insert(route.name.clone(), route);
        }
    }
    for alias in aliases.iter().filter(|a| !a.is_glob()) {
        if logical.contains(&alias.name.as_str()) {
            tracing::warn!(alias = %alias.name, "alias skipped: a logical model has that name");
            continue;
        }
        match routes.get(&alias.target) {
            Some(route) => {
                let mut route = route.clone();
                route.name = alias.name.clone();
                routes.insert(route.name.clone(), route);
            }
            None => {
                tracing::warn!(alias = %alias.name, target = %alias.target, "alias skipped: its target is not served");
            }
        }
    }
}
