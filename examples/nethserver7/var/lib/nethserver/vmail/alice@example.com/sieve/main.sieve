require "fileinto";
if header :contains "subject" "Team" { fileinto "Shared/bob@example.com/Team"; }
